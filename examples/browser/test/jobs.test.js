// Tests of the page's job grouping and tag glob matching (jobs.js).

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  JobBook,
  formatArguments,
  globToRegExp,
  minionRows,
  parseJobTag,
  returnStatus,
} from "../jobs.js";

// [glob, tag, result of Python's fnmatch.fnmatchcase(tag, glob)] from Python 3.11.
const FNMATCH_CASES = [
  ["salt/job/*/ret/*", "salt/job/1/ret/web01", true],
  ["salt/job/*/ret/*", "salt/job/1/2/ret/x", true],
  ["salt/job/*/ret/*", "salt/job/1/new", false],
  ["a?c", "abc", true],
  ["a?c", "a/c", true],
  ["a?c", "aéc", true],
  ["[ab]x", "bx", true],
  ["[!ab]x", "cx", true],
  ["[!ab]x", "ax", false],
  ["[]]x", "]x", true],
  ["[!]]x", "]x", false],
  ["[a-c]", "b", true],
  ["[a", "[a", true],
  ["a.b", "a.b", true],
  ["a.b", "axb", false],
  ["*", "", true],
  ["x[^]y", "x^y", true],
  ["x[\\]y", "x\\y", true],
  ["(a)+", "(a)+", true],
  ["[]", "[]", true],
  ["[!]", "[!]", true],
  ["salt/*", "salt/a\nb", true],
];

test("globs match as Python's fnmatchcase", () => {
  for (const [glob, tag, expected] of FNMATCH_CASES) {
    assert.equal(globToRegExp(glob).test(tag), expected, `${glob} against ${tag}`);
  }
});

test("arguments are written as on the command line", () => {
  const args = [
    "test.succeed_with_changes",
    'test "x" = y',
    3,
    { __kwarg__: true, name: "a b", test: true },
  ];

  assert.equal(
    formatArguments(args),
    'test.succeed_with_changes "test \\"x\\" = y" 3 name="a b" test=true',
  );
  assert.equal(formatArguments([]), "");
});

test("job tags parse into jid and minion", () => {
  assert.deepEqual(parseJobTag("salt/job/20261204194039500871/new"), {
    jid: "20261204194039500871",
    kind: "new",
    minionId: null,
  });
  assert.deepEqual(parseJobTag("salt/job/1/ret/web 01"), {
    jid: "1",
    kind: "ret",
    minionId: "web 01",
  });
  assert.equal(parseJobTag("salt/job/1/publish"), null);
  assert.equal(parseJobTag("salt/job//new"), null);
  assert.equal(parseJobTag("salt/auth"), null);
  assert.equal(parseJobTag(undefined), null);
});

test("return status reads success and retcode", () => {
  assert.equal(returnStatus({ success: true, retcode: 0 }), "success");
  assert.equal(returnStatus({ success: true, retcode: 2 }), "failed");
  assert.equal(returnStatus({ success: false }), "failed");
  assert.equal(returnStatus({ return: true }), "success");
});

test("job book groups returns under their job", () => {
  const book = new JobBook();
  book.add({
    tag: "salt/job/1/new",
    data: { fun: "test.ping", minions: ["web01", "db01"], tgt: "*", user: "root" },
  });
  book.add({ tag: "salt/job/1/ret/web01", data: { fun: "test.ping", success: true, retcode: 0 } });
  book.add({ tag: "salt/job/1/ret/extra", data: { fun: "test.ping", success: false, retcode: 1 } });
  const job = book.get("1");

  assert.equal(job.fun, "test.ping");
  assert.equal(job.target, "*");
  assert.deepEqual(minionRows(job), [
    { id: "web01", status: "success", retcode: 0, expected: true },
    { id: "db01", status: "waiting", retcode: undefined, expected: true },
    { id: "extra", status: "failed", retcode: 1, expected: false },
  ]);
});

test("job book accepts a return before its job", () => {
  const book = new JobBook();
  book.add({ tag: "salt/job/2/ret/web01", data: { fun: "cmd.run", success: true, retcode: 0 } });
  book.add({ tag: "salt/job/2/new", data: { fun: "cmd.run", minions: ["web01"] } });

  assert.deepEqual(minionRows(book.get("2")), [
    { id: "web01", status: "success", retcode: 0, expected: true },
  ]);
});

test("job book keeps the newest jobs", () => {
  const book = new JobBook(2);
  for (const jid of ["1", "2", "3"]) {
    book.add({ tag: `salt/job/${jid}/new`, data: { fun: "test.ping", minions: [] } });
  }

  assert.deepEqual(
    book.jobs().map((job) => job.jid),
    ["3", "2"],
  );
  assert.equal(book.add({ tag: "salt/auth", data: {} }), null);
});
