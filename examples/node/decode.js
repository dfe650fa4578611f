/**
 * Decode the NATS messages that the salt-nats engine publishes: subjects, headers
 * and payloads.
 *
 * This is the JavaScript side of `salt_nats.subjects` and `salt_nats.codec`, and it
 * follows the same rules (docs/subjects.md and docs/payload.md). It and the modules
 * in lib/ have no dependencies, so Node.js 20 and browsers load the same files as ES
 * modules. `tests/data/subject-vectors.json`, written by the Python package, checks
 * that both sides agree: `node --test` runs every vector through this module.
 *
 * JavaScript strings are UTF-16, so two things that Python keeps apart look the same
 * here. A Python string holding a high and a low surrogate as two separate code
 * points decodes to the same JavaScript string as the character they pair to. A lone
 * surrogate, which Salt produces for tag bytes that are not UTF-8, round-trips
 * exactly.
 */

import { base64ToBytes, bytesToBase64 } from "./lib/base64.js";
import { makeDate, parseIsoDate, parseIsoDatetime } from "./lib/dates.js";
import { unpackMsgpack } from "./lib/msgpack.js";
import { sha256Hex } from "./lib/sha256.js";
import { DecodeError, ExtType, SaltConstant, isPlainObject, quote, toBytes } from "./lib/types.js";
import { decodeText, hex2, utf8Decode, utf8Encode } from "./lib/utf8.js";

export { EXT_DATETIME, EXT_SALT_CONSTANT, unpackMsgpack } from "./lib/msgpack.js";
export { base64ToBytes, bytesToBase64, DecodeError, ExtType, SaltConstant, sha256Hex };
export { utf8Decode, utf8Encode };

export const DEFAULT_EVENT_PREFIX = "salt.events";
export const DEFAULT_RETURN_PREFIX = "salt.returns";
export const DEFAULT_MAX_SUBJECT_BYTES = 1024;
export const LOWEST_MAX_SUBJECT_BYTES = 64;
export const HIGHEST_MAX_SUBJECT_BYTES = 3800;

/** The token of an empty tag segment. A literal "%" is always written as "%25". */
export const EMPTY_TOKEN = "%";

/** Start of the last token of a shortened subject, followed by 16 hex digits. */
export const SHORTENED_MARKER = "%%";
const DIGEST_HEX_DIGITS = 16;
const MARKER_LENGTH = SHORTENED_MARKER.length + DIGEST_HEX_DIGITS;
const MARKER_RE = /^%%[0-9a-f]{16}$/;

export const HEADER_TAG = "Salt-Tag";
export const HEADER_TAG_ENCODING = "Salt-Tag-Encoding";
export const HEADER_MASTER = "Salt-Master";
export const HEADER_ORIGIN = "Salt-Origin";
export const HEADER_CONTENT_TYPE = "Content-Type";
export const HEADER_MSG_ID = "Nats-Msg-Id";
export const HEADER_TRACEPARENT = "traceparent";
export const HEADER_TRUNCATED = "Salt-Nats-Truncated";
export const PERCENT_ENCODING = "percent";

export const CONTENT_TYPE_JSON = "application/json";
export const CONTENT_TYPE_MSGPACK = "application/msgpack";

/** Error for a shortened subject, whose full tag is only in the `Salt-Tag` header. */
export class ShortenedSubjectError extends DecodeError {
  constructor(subject) {
    super(
      `subject ${quote(subject)} is shortened because its tag is too long for the ` +
        `subject limit; read the full tag from the '${HEADER_TAG}' header, for ` +
        "example with tagFromMessage()",
    );
    this.name = "ShortenedSubjectError";
    this.subject = subject;
  }
}

function tagDigest(tag) {
  return sha256Hex(utf8Encode(tag)).slice(0, DIGEST_HEX_DIGITS);
}

// --- tokens -----------------------------------------------------------------------

// Printable ASCII except the subject separator ".", the wildcards "*" and ">", the
// escape "%" and the tag separator "/". A token carries these characters unchanged.
const SAFE_TOKEN_RE = /^[\x21-\x24\x26-\x29\x2b-\x2d\x30-\x3d\x3f-\x7e]+$/;

function isSafeByte(byte) {
  return byte >= 0x21 && byte <= 0x7e && !"%*./>".includes(String.fromCharCode(byte));
}

/**
 * Encode one tag segment (or one returner field) as a subject token.
 *
 * An empty segment becomes "%". Every other byte of the segment's UTF-8 that is not
 * printable ASCII, and each of ".", "*", ">", "%" and "/", becomes "%XX".
 */
export function encodeToken(segment) {
  if (SAFE_TOKEN_RE.test(segment)) {
    return segment;
  }
  if (segment === "") {
    return EMPTY_TOKEN;
  }

  let token = "";
  for (const byte of utf8Encode(segment)) {
    token += isSafeByte(byte) ? String.fromCharCode(byte) : `%${hex2(byte)}`;
  }
  return token;
}

/**
 * Decode a subject token written by encodeToken.
 *
 * Throws DecodeError for any token that encodeToken never writes: an empty token, a
 * "%" without two uppercase hex digits, a character that must be escaped, an escape
 * of a character that needs none, and escapes that are not UTF-8.
 */
export function decodeToken(token) {
  if (SAFE_TOKEN_RE.test(token)) {
    return token;
  }
  if (token === EMPTY_TOKEN) {
    return "";
  }
  if (token === "") {
    throw new DecodeError(
      "invalid subject token '': NATS subjects have no empty tokens, and an empty " +
        `tag segment is written as '${EMPTY_TOKEN}'`,
    );
  }

  const bytes = [];
  for (let index = 0; index < token.length; index++) {
    const char = token[index];
    if (char === "%") {
      const digits = token.slice(index + 1, index + 3);
      if (!/^[0-9A-F]{2}$/.test(digits)) {
        throw new DecodeError(
          `invalid subject token ${quote(token)}: '%' at index ${index} is not ` +
            "followed by two uppercase hex digits",
        );
      }
      const byte = parseInt(digits, 16);
      if (isSafeByte(byte)) {
        throw new DecodeError(
          `invalid subject token ${quote(token)}: the escape %${digits} at index ` +
            `${index} stands for ${quote(String.fromCharCode(byte))}, which the encoder ` +
            "writes unescaped",
        );
      }
      bytes.push(byte);
      index += 2;
    } else if (isSafeByte(char.charCodeAt(0))) {
      bytes.push(char.charCodeAt(0));
    } else {
      throw new DecodeError(
        `invalid subject token ${quote(token)}: character ${quote(char)} at index ` +
          `${index} is always percent-encoded by the encoder`,
      );
    }
  }

  try {
    return utf8Decode(Uint8Array.from(bytes), "surrogatepass");
  } catch (error) {
    throw new DecodeError(
      `invalid subject token ${quote(token)}: its escapes are not valid UTF-8`,
      { cause: error },
    );
  }
}

// --- subjects ---------------------------------------------------------------------

/**
 * Check that `prefix` is a usable NATS publish subject, as the engine does.
 *
 * Throws DecodeError for an empty prefix, a wildcard, whitespace, a character outside
 * printable ASCII, a leading or trailing "." or an empty token.
 */
export function validatePrefix(prefix) {
  if (typeof prefix !== "string" || prefix === "") {
    throw new DecodeError(
      "subject prefix is empty; set it to a dot-separated subject such as " +
        `'${DEFAULT_EVENT_PREFIX}'`,
    );
  }
  for (let index = 0; index < prefix.length; index++) {
    const code = prefix.charCodeAt(index);
    if (prefix[index] === "*" || prefix[index] === ">") {
      throw new DecodeError(
        `subject prefix ${quote(prefix)} contains '${prefix[index]}'; NATS reads '*' and ` +
          "'>' as wildcards, which a publish subject must not contain",
      );
    }
    if (code < 0x21 || code > 0x7e) {
      throw new DecodeError(
        `subject prefix ${quote(prefix)} contains ${quote(prefix[index])} at index ` +
          `${index}; use only printable ASCII characters without whitespace`,
      );
    }
  }
  if (prefix.startsWith(".") || prefix.endsWith(".")) {
    throw new DecodeError(
      `subject prefix ${quote(prefix)} starts or ends with '.'; remove the dot, ` +
        "because the separator is added to it",
    );
  }
  if (prefix.includes("..")) {
    throw new DecodeError(
      `subject prefix ${quote(prefix)} contains an empty token ('..'); separate its ` +
        "tokens with single dots",
    );
  }
}

function validateSubjectSettings(prefix, maxSubjectBytes) {
  validatePrefix(prefix);
  if (
    !Number.isInteger(maxSubjectBytes) ||
    maxSubjectBytes < LOWEST_MAX_SUBJECT_BYTES ||
    maxSubjectBytes > HIGHEST_MAX_SUBJECT_BYTES
  ) {
    throw new DecodeError(
      `maxSubjectBytes is ${maxSubjectBytes}; set it between ${LOWEST_MAX_SUBJECT_BYTES} ` +
        `and ${HIGHEST_MAX_SUBJECT_BYTES}, as the engine's max_subject_bytes`,
    );
  }
  const longestPrefix = maxSubjectBytes - 1 - MARKER_LENGTH;
  if (prefix.length > longestPrefix) {
    throw new DecodeError(
      `subject prefix ${quote(prefix)} is ${prefix.length} bytes, which leaves no room ` +
        `for a tag within maxSubjectBytes=${maxSubjectBytes}`,
    );
  }
}

/**
 * Build the subject that the engine publishes an event with tag `tag` on.
 *
 * A subject longer than `maxSubjectBytes` keeps its leading whole tokens and ends
 * with a "%%<digest>" token, as the engine's `max_subject_bytes` setting does.
 */
export function tagToSubject(
  tag,
  prefix = DEFAULT_EVENT_PREFIX,
  maxSubjectBytes = DEFAULT_MAX_SUBJECT_BYTES,
) {
  validateSubjectSettings(prefix, maxSubjectBytes);

  const tokens = tag.split("/").map(encodeToken);
  const subject = `${prefix}.${tokens.join(".")}`;
  if (subject.length <= maxSubjectBytes) {
    return subject;
  }

  const marker = SHORTENED_MARKER + tagDigest(tag);
  const kept = [prefix];
  let length = prefix.length;
  for (const token of tokens) {
    if (length + 1 + token.length + 1 + marker.length > maxSubjectBytes) {
      break;
    }
    kept.push(token);
    length += 1 + token.length;
  }
  kept.push(marker);
  return kept.join(".");
}

/** Return whether a subject ends with the shortened-subject marker token. */
export function isShortenedSubject(subject) {
  return subject.slice(subject.lastIndexOf(".") + 1).startsWith(SHORTENED_MARKER);
}

function splitSubject(subject, prefix) {
  validatePrefix(prefix);
  const head = `${prefix}.`;
  if (!subject.startsWith(head) || subject.length === head.length) {
    throw new DecodeError(
      `subject ${quote(subject)} is not under the prefix ${quote(prefix)}; check that ` +
        "the consumer uses the same prefix as the engine",
    );
  }
  return subject.slice(head.length).split(".");
}

/**
 * Decode the event tag from a subject.
 *
 * Throws ShortenedSubjectError for a shortened subject, whose tag is in the headers
 * (use tagFromMessage), and DecodeError when the subject is not under `prefix` or
 * contains a token that the encoder never writes.
 */
export function subjectToTag(subject, prefix = DEFAULT_EVENT_PREFIX) {
  const tokens = splitSubject(subject, prefix);

  const last = tokens[tokens.length - 1];
  if (last.startsWith(SHORTENED_MARKER)) {
    if (!MARKER_RE.test(last)) {
      throw new DecodeError(
        `subject ${quote(subject)} ends with a malformed shortened-subject token ` +
          `${quote(last)}; expected '%%' and 16 lowercase hex digits`,
      );
    }
    throw new ShortenedSubjectError(subject);
  }

  const segments = tokens.map((token) => {
    const segment = decodeToken(token);
    if (segment.includes("/")) {
      throw new DecodeError(
        `invalid subject token ${quote(token)} in ${quote(subject)}: it decodes to a ` +
          "segment containing '/', which a tag segment never contains",
      );
    }
    return segment;
  });
  return segments.join("/");
}

// --- headers ----------------------------------------------------------------------

/**
 * Return the value of header `name`, or undefined when the message has none.
 *
 * `headers` may be a nats.js MsgHdrs, a Map or a plain object. MsgHdrs.get returns ""
 * for a missing header, so presence is checked with has().
 */
export function readHeader(headers, name) {
  if (headers == null) {
    return undefined;
  }
  if (typeof headers.has === "function" && typeof headers.get === "function") {
    return headers.has(name) ? headers.get(name) : undefined;
  }
  return Object.hasOwn(headers, name) ? headers[name] : undefined;
}

/** Return every header of a message as a plain object, with the first value of each. */
export function headerObject(headers) {
  const result = {};
  if (headers == null) {
    return result;
  }
  const keys =
    typeof headers.keys === "function" ? Array.from(headers.keys()) : Object.keys(headers);
  for (const key of keys) {
    result[key] = readHeader(headers, key);
  }
  return result;
}

const PLAIN_HEADER_VALUE_RE = /^(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?$/;

/**
 * Make `text` safe to send as a NATS header value, as the engine writes `Salt-Tag`.
 *
 * Returns `{value: text, encoded: false}` for printable ASCII with no leading or
 * trailing space. Otherwise every UTF-8 byte outside 0x21..0x7E, and every "%", is
 * written as "%XX" and `encoded` is true.
 */
export function encodeHeaderValue(text) {
  if (PLAIN_HEADER_VALUE_RE.test(text)) {
    return { value: text, encoded: false };
  }
  let value = "";
  for (const byte of utf8Encode(text)) {
    const plain = byte >= 0x21 && byte <= 0x7e && byte !== 0x25;
    value += plain ? String.fromCharCode(byte) : `%${hex2(byte)}`;
  }
  return { value, encoded: true };
}

// Decode %XX escapes as UTF-8 the way Python's urllib.parse.unquote does: each run of
// ASCII text is turned into bytes and decoded, and other characters stay as they are.
function percentDecode(value, strict) {
  let text = "";
  let bytes = [];
  const flush = () => {
    if (bytes.length > 0) {
      text += utf8Decode(Uint8Array.from(bytes), "surrogatepass");
      bytes = [];
    }
  };

  for (let index = 0; index < value.length; index++) {
    const code = value.charCodeAt(index);
    if (code >= 0x80) {
      flush();
      text += value[index];
      continue;
    }
    const digits = value.slice(index + 1, index + 3);
    if (value[index] === "%" && /^[0-9A-Fa-f]{2}$/.test(digits)) {
      bytes.push(parseInt(digits, 16));
      index += 2;
    } else if (value[index] === "%" && strict) {
      throw new DecodeError(
        `invalid percent-encoded header value: '%' at index ${index} is not followed ` +
          "by two hex digits",
      );
    } else {
      bytes.push(code);
    }
  }
  flush();
  return text;
}

/**
 * Reverse encodeHeaderValue.
 *
 * Throws DecodeError when `encoded` is true and `value` has a "%" without two hex
 * digits after it, or escapes that are not UTF-8.
 */
export function decodeHeaderValue(value, encoded) {
  if (!encoded) {
    return value;
  }
  try {
    return percentDecode(value, true);
  } catch (error) {
    if (error instanceof DecodeError && error.message.startsWith("invalid UTF-8")) {
      throw new DecodeError(
        "invalid percent-encoded header value: its escapes are not valid UTF-8",
        { cause: error },
      );
    }
    throw error;
  }
}

/**
 * Decode a `Salt-Master` or `Salt-Origin` header value into the master or minion id.
 *
 * Like Python's `unquote`, it leaves a "%" that starts no escape as it is. Throws
 * DecodeError when the escapes are not UTF-8.
 */
export function decodeId(value) {
  return percentDecode(value, false);
}

/** Return the `Salt-Tag` header, and `Salt-Tag-Encoding` when it is needed, for a tag. */
export function tagHeaders(tag) {
  const { value, encoded } = encodeHeaderValue(tag);
  if (encoded) {
    return { [HEADER_TAG]: value, [HEADER_TAG_ENCODING]: PERCENT_ENCODING };
  }
  return { [HEADER_TAG]: value };
}

function shortenedSubjectMatches(subject, prefix, tag) {
  const keptTokens = splitSubject(subject, prefix);
  const marker = keptTokens.pop();
  if (marker !== SHORTENED_MARKER + tagDigest(tag)) {
    return false;
  }

  // A shortened subject always keeps fewer tokens than its tag has segments.
  const segments = tag.split("/");
  if (keptTokens.length >= segments.length) {
    return false;
  }
  return keptTokens.every((token, index) => encodeToken(segments[index]) === token);
}

/**
 * Recover the event tag of a received message.
 *
 * The tag comes from the subject unless the subject is shortened. Then it comes from
 * the `Salt-Tag` header, which must match the subject's digest and leading tokens.
 * `headers` may be a nats.js MsgHdrs, a Map or a plain object. Throws DecodeError when
 * the subject is invalid, or when it is shortened and the header is missing,
 * malformed or does not match.
 */
export function tagFromMessage(subject, headers, prefix = DEFAULT_EVENT_PREFIX) {
  try {
    return subjectToTag(subject, prefix);
  } catch (error) {
    if (!(error instanceof ShortenedSubjectError)) {
      throw error;
    }
  }

  const value = readHeader(headers, HEADER_TAG);
  if (value === undefined) {
    throw new DecodeError(
      `subject ${quote(subject)} is shortened and the message has no '${HEADER_TAG}' ` +
        "header, so its tag cannot be recovered",
    );
  }
  const encoding = readHeader(headers, HEADER_TAG_ENCODING);
  if (encoding !== undefined && encoding !== PERCENT_ENCODING) {
    throw new DecodeError(
      `unsupported '${HEADER_TAG_ENCODING}' header ${quote(encoding)}; the only ` +
        `supported value is '${PERCENT_ENCODING}'`,
    );
  }
  const tag = decodeHeaderValue(value, encoding !== undefined);

  if (!shortenedSubjectMatches(subject, prefix, tag)) {
    throw new DecodeError(
      `the '${HEADER_TAG}' header does not match the shortened subject ` +
        `${quote(subject)}: the tag's digest or leading tokens differ`,
    );
  }
  return tag;
}

// --- returner subjects ------------------------------------------------------------

/**
 * Build the returner subject `<prefix>.<minion id>.<function>.<jid>` of a job return.
 *
 * Returner subjects are never shortened. Throws DecodeError when the subject would be
 * longer than `maxSubjectBytes`.
 */
export function returnSubject(
  minionId,
  fun,
  jid,
  prefix = DEFAULT_RETURN_PREFIX,
  maxSubjectBytes = DEFAULT_MAX_SUBJECT_BYTES,
) {
  validateSubjectSettings(prefix, maxSubjectBytes);
  const subject = [prefix, encodeToken(minionId), encodeToken(fun), encodeToken(jid)].join(".");
  if (subject.length > maxSubjectBytes) {
    throw new DecodeError(
      `return subject is ${subject.length} bytes, over maxSubjectBytes=${maxSubjectBytes}`,
    );
  }
  return subject;
}

/** Decode `{minionId, fun, jid}` from a returner subject. Throws DecodeError if invalid. */
export function parseReturnSubject(subject, prefix = DEFAULT_RETURN_PREFIX) {
  const tokens = splitSubject(subject, prefix);
  if (tokens.length !== 3) {
    throw new DecodeError(
      `return subject ${quote(subject)} has ${tokens.length} tokens after the prefix ` +
        `${quote(prefix)}; expected 3 (minion id, function, jid)`,
    );
  }
  const [minionId, fun, jid] = tokens.map(decodeToken);
  return { minionId, fun, jid };
}

// --- JSON payloads ----------------------------------------------------------------

// Decoders of the engine's single-key "$" objects. Each throws DecodeError (or
// TypeError) on a value of the wrong form, and the object then stays as it is, as in
// salt_nats.codec.
const JSON_DECODERS = {
  $bytes: (value) => base64ToBytes(value),
  $datetime: (value, options) => makeDate(parseIsoDatetime(value), "datetime", options.dates),
  $date: (value, options) => makeDate(parseIsoDate(value), "date", options.dates),
  $set: (value) => {
    // NOTE: Python also accepts a string or an object here and builds a set of its
    // characters or keys. The engine always writes an array.
    if (!Array.isArray(value)) {
      throw new TypeError("$set needs an array");
    }
    // Python rejects items that are not hashable, so the object stays as it is.
    if (value.some((item) => Array.isArray(item) || item instanceof Set || isPlainObject(item))) {
      throw new TypeError("$set items must be hashable");
    }
    return new Set(value);
  },
  $salt_constant: (value) => {
    if (!Array.isArray(value) || value.length !== 2) {
      throw new TypeError("$salt_constant needs [name, value]");
    }
    return new SaltConstant(value[0], value[1]);
  },
  $ext: (value) => {
    // NOTE: Python also accepts a code given as a numeric string or a float.
    if (!Array.isArray(value) || value.length !== 2) {
      throw new TypeError("$ext needs [code, base64]");
    }
    const [code, data] = value;
    if (!Number.isInteger(code) || code < 0 || code > 127) {
      throw new TypeError("$ext code must be an integer from 0 to 127");
    }
    return new ExtType(code, base64ToBytes(data));
  },
  $float: (value) => {
    const floats = { nan: NaN, inf: Infinity, "-inf": -Infinity };
    if (typeof value !== "string" || !Object.hasOwn(floats, value)) {
      throw new TypeError('$float needs "nan", "inf" or "-inf"');
    }
    return floats[value];
  },
};


function reviveJsonValue(value, options) {
  if (!isPlainObject(value)) {
    return value;
  }
  const keys = Object.keys(value);
  if (keys.length !== 1 || !Object.hasOwn(JSON_DECODERS, keys[0])) {
    return value;
  }
  try {
    return JSON_DECODERS[keys[0]](value[keys[0]], options);
  } catch (error) {
    if (error instanceof DecodeError || error instanceof TypeError) {
      return value;
    }
    throw error;
  }
}

function decodeJsonPayload(payload, options) {
  let text;
  try {
    // A BOM is dropped, as Python's json.loads drops it from bytes.
    text = decodeText(payload[0] === 0xef && payload[1] === 0xbb && payload[2] === 0xbf
      ? payload.subarray(3)
      : payload, "surrogatepass");
  } catch (error) {
    throw new DecodeError("JSON payload is not valid UTF-8", { cause: error });
  }
  try {
    return JSON.parse(text, (key, value) => reviveJsonValue(value, options));
  } catch (error) {
    throw new DecodeError(`payload is not valid JSON: ${error.message}`, { cause: error });
  }
}

// --- payloads ---------------------------------------------------------------------

// Python's bytes.lstrip() removes these ASCII whitespace bytes.
const ASCII_WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0d, 0x0b, 0x0c]);

function sniffContentType(bytes) {
  let index = 0;
  while (index < bytes.length && ASCII_WHITESPACE.has(bytes[index])) {
    index++;
  }
  return bytes[index] === 0x7b ? CONTENT_TYPE_JSON : CONTENT_TYPE_MSGPACK;
}

/**
 * Decode a published payload into `{tag, data}`, restoring the engine's special types.
 *
 * `contentType` is the message's `Content-Type` header. When it is undefined or null,
 * a payload that starts with "{" is read as JSON and anything else as msgpack. Any
 * other value than the two content types throws. In the data, `$bytes` becomes a
 * Uint8Array, `$set` a Set, `$salt_constant` a SaltConstant, `$ext` an ExtType and
 * `$float` NaN or ±Infinity. `$datetime` and `$date` depend on `options.dates`:
 *
 * - "string" (default): the ISO 8601 text as Python's isoformat() writes it, with
 *   microseconds and any UTC offset, for example "2026-12-04T20:45:56.123456".
 * - "Date": a Date. A datetime without an offset is read as UTC, and digits after the
 *   milliseconds are dropped.
 * - a function `(iso, kind)`, where `kind` is "datetime" or "date": its return value.
 *
 * Throws DecodeError when the payload does not decode or is not an object with `tag`
 * and `data`.
 */
export function decodePayload(payload, contentType, options = {}) {
  const bytes = toBytes(payload);
  const type = contentType ?? sniffContentType(bytes);

  let event;
  if (type === CONTENT_TYPE_JSON) {
    event = decodeJsonPayload(bytes, options);
  } else if (type === CONTENT_TYPE_MSGPACK) {
    event = unpackMsgpack(bytes, options);
  } else {
    throw new DecodeError(`unknown content type ${quote(type)}`);
  }

  if (event instanceof Map && event.has("tag") && event.has("data")) {
    return { tag: event.get("tag"), data: event.get("data") };
  }
  if (!isPlainObject(event) || !Object.hasOwn(event, "tag") || !Object.hasOwn(event, "data")) {
    throw new DecodeError("payload is not an object with 'tag' and 'data'");
  }
  return { tag: event.tag, data: event.data };
}

/**
 * Decode a whole NATS message (a nats.js Msg, or any `{subject, data, headers}`).
 *
 * Returns `{subject, tag, data, master, origin, truncated, headers}`. The tag comes
 * from tagFromMessage, `master` and `origin` are the decoded ids or undefined, and
 * `truncated` is the number of values the engine replaced to fit max_payload.
 * `options.prefix` is the engine's subject prefix and `options.dates` is passed to
 * decodePayload. Throws DecodeError as those functions do.
 */
export function decodeMessage(message, options = {}) {
  const prefix = options.prefix ?? DEFAULT_EVENT_PREFIX;
  const { headers } = message;

  const tag = tagFromMessage(message.subject, headers, prefix);
  const { data } = decodePayload(message.data, readHeader(headers, HEADER_CONTENT_TYPE), options);

  const master = readHeader(headers, HEADER_MASTER);
  const origin = readHeader(headers, HEADER_ORIGIN);
  const truncated = readHeader(headers, HEADER_TRUNCATED);
  return {
    subject: message.subject,
    tag,
    data,
    master: master === undefined ? undefined : decodeId(master),
    origin: origin === undefined ? undefined : decodeId(origin),
    truncated: truncated === undefined ? 0 : Number(truncated),
    headers: headerObject(headers),
  };
}

/**
 * Write decoded values back in the engine's JSON form, as a JSON.stringify replacer.
 *
 * Uint8Array becomes `{"$bytes": ...}`, Set `{"$set": [...]}`, SaltConstant
 * `{"$salt_constant": [...]}`, ExtType `{"$ext": [...]}`, NaN and ±Infinity
 * `{"$float": ...}`, and Date `{"$datetime": ...}` in UTC. A Map becomes an object
 * whose keys are written as JSON text, as Python writes non-string keys. NOTE: a
 * BigInt is written as a decimal string, so it does not decode to a number again.
 */
export function jsonReplacer(key, value) {
  if (value instanceof SaltConstant) {
    return { $salt_constant: [value.name, value.value] };
  }
  if (value instanceof ExtType) {
    return { $ext: [value.code, bytesToBase64(value.data)] };
  }
  if (value instanceof Uint8Array) {
    return { $bytes: bytesToBase64(value) };
  }
  if (value instanceof Set) {
    return { $set: Array.from(value) };
  }
  if (value instanceof Map) {
    const object = {};
    for (const [entryKey, entryValue] of value) {
      const name =
        typeof entryKey === "string"
          ? entryKey
          : entryKey instanceof Uint8Array
            ? utf8Decode(entryKey, "surrogateescape")
            : JSON.stringify(entryKey, jsonReplacer);
      Object.defineProperty(object, name, {
        value: entryValue,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return object;
  }
  if (Number.isNaN(value)) {
    return { $float: "nan" };
  }
  if (value === Infinity || value === -Infinity) {
    return { $float: value > 0 ? "inf" : "-inf" };
  }
  if (typeof value === "bigint") {
    return value.toString();
  }
  // Date.prototype.toJSON has already turned a Date into a string; `this[key]` is the
  // Date itself.
  if (typeof value === "string" && this && this[key] instanceof Date) {
    return { $datetime: value.replace("Z", "+00:00") };
  }
  return value;
}
