// Group Salt job events by jid, and match tags against Salt's tag globs.
//
// The page's DOM code is in app.js. This module has no DOM access, so `node --test`
// checks it directly.

/**
 * Compile a Salt tag glob into a RegExp with the rules of Python's fnmatchcase.
 *
 * "*" matches any text, "/" included, "?" one character, "[seq]" one character in
 * seq and "[!seq]" one not in it. A "[" without a closing "]" is a literal "[".
 */
export function globToRegExp(glob) {
  let pattern = "";
  for (let index = 0; index < glob.length; index++) {
    const char = glob[index];
    if (char === "*") {
      pattern += "[\\s\\S]*";
    } else if (char === "?") {
      pattern += "[\\s\\S]";
    } else if (char === "[") {
      // A "]" right after "[" or "[!" is part of the set, as in fnmatch.
      let end = index + 1;
      if (glob[end] === "!") end++;
      if (glob[end] === "]") end++;
      end = glob.indexOf("]", end);
      if (end === -1) {
        pattern += "\\[";
        continue;
      }
      let set = glob.slice(index + 1, end).replace(/\\/g, "\\\\").replace(/\^/g, "\\^");
      set = set.replace(/\[/g, "\\[").replace(/]/g, "\\]");
      if (set.startsWith("!")) {
        set = `^${set.slice(1)}`;
      }
      pattern += set === "" ? "(?!)" : `[${set}]`;
      index = end;
    } else {
      pattern += char.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    }
  }
  return new RegExp(`^(?:${pattern})$`, "u");
}

/**
 * Split a job event tag into `{jid, kind, minionId}`, or return null for other tags.
 *
 * `salt/job/<jid>/new` has kind "new" and `salt/job/<jid>/ret/<minion id>` kind "ret".
 * Salt rejects minion ids that contain "/", so the id is the last segment.
 */
export function parseJobTag(tag) {
  if (typeof tag !== "string") {
    return null;
  }
  const segments = tag.split("/");
  if (segments[0] !== "salt" || segments[1] !== "job" || segments[2] === "") {
    return null;
  }
  if (segments.length === 4 && segments[3] === "new") {
    return { jid: segments[2], kind: "new", minionId: null };
  }
  if (segments.length === 5 && segments[3] === "ret" && segments[4] !== "") {
    return { jid: segments[2], kind: "ret", minionId: segments[4] };
  }
  return null;
}

/**
 * Return "failed" when a return's data shows a failure, else "success".
 *
 * A return fails when `success` is false or `retcode` is a number other than 0. A
 * state run that fails one state has success true and retcode 2, so both are read.
 */
export function returnStatus(data) {
  const retcode = data?.retcode;
  if (data?.success === false || (typeof retcode === "number" && retcode !== 0)) {
    return "failed";
  }
  return "success";
}

/**
 * Write a job's arguments as the `salt` command line shows them.
 *
 * Salt puts keyword arguments in an object marked with `__kwarg__: true`, which
 * becomes `key=value` pairs. A string without spaces, quotes or "=" is written as
 * it is, and every other value through `stringify` (JSON.stringify by default).
 */
export function formatArguments(args, stringify = JSON.stringify) {
  const formatValue = (value) =>
    typeof value === "string" && /^[^\s"'=]+$/.test(value) ? value : stringify(value);

  const parts = [];
  for (const arg of args) {
    if (arg !== null && typeof arg === "object" && arg.__kwarg__ === true) {
      for (const [key, value] of Object.entries(arg)) {
        if (key !== "__kwarg__") {
          parts.push(`${key}=${formatValue(value)}`);
        }
      }
    } else {
      parts.push(formatValue(arg));
    }
  }
  return parts.join(" ");
}

/** The jobs seen on the event stream, newest first, at most `maxJobs` of them. */
export class JobBook {
  constructor(maxJobs = 200) {
    this.maxJobs = maxJobs;
    this.byJid = new Map();
  }

  /**
   * Record a decoded job event and return its jid, or null for other events.
   *
   * A return may arrive before its job's `new` event, or without one (for example
   * after the page connected mid-job), so either kind creates the job.
   */
  add(event) {
    const parsed = parseJobTag(event.tag);
    if (parsed === null) {
      return null;
    }
    const job = this.ensureJob(parsed.jid, event);
    const data = event.data !== null && typeof event.data === "object" ? event.data : {};

    if (parsed.kind === "new") {
      job.newEvent = event;
      job.fun = typeof data.fun === "string" ? data.fun : job.fun;
      job.args = Array.isArray(data.arg) ? data.arg : job.args;
      job.target = data.tgt ?? job.target;
      job.targetType = data.tgt_type ?? job.targetType;
      job.user = data.user ?? job.user;
      job.expected = Array.isArray(data.minions) ? data.minions.map(String) : job.expected;
    } else {
      job.fun ??= typeof data.fun === "string" ? data.fun : undefined;
      job.returns.set(parsed.minionId, {
        status: returnStatus(data),
        success: data.success,
        retcode: data.retcode,
        event,
      });
    }
    return parsed.jid;
  }

  ensureJob(jid, event) {
    let job = this.byJid.get(jid);
    if (job === undefined) {
      job = {
        jid,
        fun: undefined,
        args: [],
        target: undefined,
        targetType: undefined,
        user: undefined,
        expected: [],
        returns: new Map(),
        newEvent: undefined,
        firstSeen: event.receivedAt ?? new Date(),
      };
      this.byJid.set(jid, job);
      while (this.byJid.size > this.maxJobs) {
        // A Map keeps insertion order, so the first key is the oldest job.
        this.byJid.delete(this.byJid.keys().next().value);
      }
    }
    return job;
  }

  get(jid) {
    return this.byJid.get(jid);
  }

  /** Return every job, newest first. */
  jobs() {
    return Array.from(this.byJid.values()).reverse();
  }
}

/**
 * List a job's minions with their state: the expected ones in the order of the
 * job's `new` event, then any other minion that returned.
 *
 * Each row is `{id, status, retcode, expected}`, where `status` is "success",
 * "failed" or "waiting" (expected, and no return yet).
 */
export function minionRows(job) {
  const rows = [];
  for (const id of job.expected) {
    const ret = job.returns.get(id);
    rows.push({
      id,
      status: ret ? ret.status : "waiting",
      retcode: ret?.retcode,
      expected: true,
    });
  }
  for (const [id, ret] of job.returns) {
    if (!job.expected.includes(id)) {
      rows.push({ id, status: ret.status, retcode: ret.retcode, expected: false });
    }
  }
  return rows;
}
