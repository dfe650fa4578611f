// Run the shared vectors in tests/data/subject-vectors.json through decode.js.
//
// The Python package writes the vectors (tests/unit/test_subject_vectors.py), so a
// pass here means the JavaScript decoder agrees with salt_nats.subjects and
// salt_nats.codec case by case. Set SALT_NATS_VECTORS to use another vectors file.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import {
  DecodeError,
  ExtType,
  SaltConstant,
  ShortenedSubjectError,
  decodeHeaderValue,
  decodeId,
  decodeMessage,
  decodePayload,
  encodeHeaderValue,
  encodeToken,
  isShortenedSubject,
  jsonReplacer,
  parseReturnSubject,
  returnSubject,
  subjectToTag,
  tagFromMessage,
  tagHeaders,
  tagToSubject,
} from "../decode.js";

const vectorsPath =
  process.env.SALT_NATS_VECTORS ??
  new URL("../../../tests/data/subject-vectors.json", import.meta.url);
const vectors = JSON.parse(readFileSync(vectorsPath, "utf8"));

// Turn decoded data into the vectors' neutral form (see the vectors' description).
function neutral(value) {
  if (value === null || typeof value === "boolean" || typeof value === "string") {
    return value;
  }
  if (typeof value === "number") {
    if (Number.isNaN(value)) return { "!float": "nan" };
    if (!Number.isFinite(value)) return { "!float": value > 0 ? "inf" : "-inf" };
    return value;
  }
  if (typeof value === "bigint") {
    return { "!int": value.toString() };
  }

  if (value instanceof Uint8Array) {
    return { "!bytes": Buffer.from(value).toString("hex") };
  }
  if (value instanceof Set) {
    return { "!set": sortedByText(Array.from(value, neutral)) };
  }
  if (value instanceof SaltConstant) {
    return { "!salt_constant": [neutral(value.name), neutral(value.value)] };
  }
  if (value instanceof ExtType) {
    return { "!ext": [value.code, Buffer.from(value.data).toString("hex")] };
  }

  if (value instanceof Map) {
    return { "!map": Array.from(value, ([key, item]) => [neutral(key), neutral(item)]) };
  }
  if (Array.isArray(value)) {
    return value.map(neutral);
  }
  const object = {};
  for (const key of Object.keys(value)) {
    Object.defineProperty(object, key, {
      value: neutral(value[key]),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return object;
}

// Set items have no order, so both sides are sorted by their JSON text.
function sortedByText(items) {
  return items.sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
}

function sortSets(value) {
  if (Array.isArray(value)) {
    return value.map(sortSets);
  }
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "!set") {
      return { "!set": sortedByText(value["!set"].map(sortSets)) };
    }
    const object = {};
    for (const key of keys) {
      Object.defineProperty(object, key, {
        value: sortSets(value[key]),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return object;
  }
  return value;
}

// The `dates` option that returns the vectors' neutral form of datetimes and dates.
const neutralDates = (iso, kind) => ({ [`!${kind}`]: iso });

function decodeVector(vector) {
  const payload = Buffer.from(vector.payload_base64, "base64");
  return decodePayload(payload, vector.content_type, { dates: neutralDates });
}

describe("subjects", () => {
  test("tags encode to the vector subjects", () => {
    for (const vector of vectors.subjects) {
      const subject = tagToSubject(vector.tag, vector.prefix, vector.max_subject_bytes);

      assert.equal(subject, vector.subject, `tag ${JSON.stringify(vector.tag).slice(0, 80)}`);
      assert.equal(isShortenedSubject(subject), vector.shortened);
      assert.deepEqual(tagHeaders(vector.tag), vector.headers);
    }
  });

  test("vector subjects decode to their tags", () => {
    for (const vector of vectors.subjects) {
      if (vector.shortened) {
        assert.throws(() => subjectToTag(vector.subject, vector.prefix), ShortenedSubjectError);
      } else {
        assert.equal(subjectToTag(vector.subject, vector.prefix), vector.tag);
      }
      assert.equal(tagFromMessage(vector.subject, vector.headers, vector.prefix), vector.tag);
    }
  });

  test("subjects decode or fail as in Python", () => {
    for (const vector of vectors.decode_subjects) {
      const decode = () => subjectToTag(vector.subject, vector.prefix);
      if (vector.error === "shortened") {
        assert.throws(decode, ShortenedSubjectError, vector.subject);
      } else if (vector.error === "invalid") {
        assert.throws(
          decode,
          (error) => error instanceof DecodeError && !(error instanceof ShortenedSubjectError),
          vector.subject,
        );
      } else {
        assert.equal(decode(), vector.tag, vector.subject);
      }
    }
  });

  test("token of an empty segment is %", () => {
    assert.equal(encodeToken(""), "%");
    assert.equal(subjectToTag("salt.events.salt.job.%"), "salt/job/");
  });
});

describe("headers", () => {
  test("tag from message follows the headers when shortened", () => {
    for (const vector of vectors.messages) {
      const headers = vector.headers ?? undefined;
      const read = () => tagFromMessage(vector.subject, headers, vector.prefix);
      if (vector.error) {
        assert.throws(read, DecodeError, vector.subject.slice(0, 80));
      } else {
        assert.equal(read(), vector.tag);
      }
    }
  });

  test("tag from message reads a Map and MsgHdrs-like headers", () => {
    const vector = vectors.messages.find((item) => item.tag && item.headers?.["Salt-Tag-Encoding"]);
    const map = new Map(Object.entries(vector.headers));
    const msgHdrs = {
      has: (name) => map.has(name),
      get: (name) => map.get(name) ?? "",
    };

    assert.equal(tagFromMessage(vector.subject, map, vector.prefix), vector.tag);
    assert.equal(tagFromMessage(vector.subject, msgHdrs, vector.prefix), vector.tag);
  });

  test("header values encode and decode", () => {
    for (const vector of vectors.header_values) {
      assert.deepEqual(encodeHeaderValue(vector.text), {
        value: vector.value,
        encoded: vector.encoded,
      });
      assert.equal(decodeHeaderValue(vector.value, vector.encoded), vector.text);
    }
    for (const vector of vectors.decode_header_values) {
      const decode = () => decodeHeaderValue(vector.value, vector.encoded);
      if (vector.error) {
        assert.throws(decode, DecodeError, vector.value);
      } else {
        assert.equal(decode(), vector.text, vector.value);
      }
    }
  });

  test("master and minion ids decode", () => {
    for (const vector of vectors.ids) {
      assert.equal(decodeId(vector.value), vector.id, vector.value);
    }
  });
});

describe("returner subjects", () => {
  test("fields encode and decode", () => {
    for (const vector of vectors.return_subjects) {
      const subject = returnSubject(vector.minion_id, vector.fun, vector.jid, vector.prefix);

      assert.equal(subject, vector.subject);
      assert.deepEqual(parseReturnSubject(subject, vector.prefix), {
        minionId: vector.minion_id,
        fun: vector.fun,
        jid: vector.jid,
      });
    }
  });

  test("subjects decode or fail as in Python", () => {
    for (const vector of vectors.decode_return_subjects) {
      const parse = () => parseReturnSubject(vector.subject, vector.prefix);
      if (vector.error) {
        assert.throws(parse, DecodeError, vector.subject);
      } else {
        assert.deepEqual(parse(), {
          minionId: vector.fields.minion_id,
          fun: vector.fields.fun,
          jid: vector.fields.jid,
        });
      }
    }
  });
});

describe("payloads", () => {
  for (const vector of vectors.payloads) {
    test(vector.name, () => {
      if (vector.error) {
        assert.throws(() => decodeVector(vector), DecodeError);
        return;
      }
      const { tag, data } = decodeVector(vector);

      assert.equal(tag, vector.tag);
      assert.deepEqual(sortSets(neutral(data)), sortSets(vector.data));
    });
  }

  test("JSON replacer writes the engine's JSON form back", () => {
    for (const vector of vectors.payloads) {
      if (!vector.encoded_by_engine || vector.content_type !== "application/json") {
        continue;
      }
      const decoded = decodeVector(vector);
      const text = JSON.stringify(decoded, jsonReplacer);
      const again = decodePayload(Buffer.from(text), "application/json", { dates: neutralDates });

      // Datetimes were turned into neutral objects by `dates`, so they are compared as such.
      assert.deepEqual(sortSets(neutral(again.data)), sortSets(vector.data), vector.name);
    }
  });

  test("datetimes become Date objects on request", () => {
    const vector = vectors.payloads.find((item) => item.name === "JSON: datetimes");
    const payload = Buffer.from(vector.payload_base64, "base64");
    const { data } = decodePayload(payload, "application/json", { dates: "Date" });

    assert.ok(data.naive instanceof Date);
    assert.equal(data.naive.toISOString(), "2026-12-04T20:45:56.123Z");
    assert.equal(data.offset.toISOString(), "2026-12-05T02:15:00.000Z");
    assert.equal(data.date.toISOString(), "2026-02-28T00:00:00.000Z");
  });

  test("datetimes are ISO text by default", () => {
    const vector = vectors.payloads.find((item) => item.name === "msgpack: salt types");
    const payload = Buffer.from(vector.payload_base64, "base64");
    const { data } = decodePayload(payload, "application/msgpack");

    assert.equal(data.when, "2026-12-04T20:45:56.123456");
    assert.equal(data["whole second"], "2026-12-04T20:45:56");
  });

  test("__proto__ key stays an own property", () => {
    const vector = vectors.payloads.find((item) => item.name === "by hand: proto key");
    const { data } = decodeVector(vector);

    assert.ok(Object.hasOwn(data, "__proto__"));
    assert.equal({}.polluted, undefined);
    assert.equal(Object.getPrototypeOf(data), Object.prototype);
  });
});

describe("messages", () => {
  test("decodeMessage returns tag, data, ids and headers", () => {
    const vector = vectors.payloads.find((item) => item.name === "JSON: ping return");
    const message = {
      subject: tagToSubject(vector.tag),
      data: Buffer.from(vector.payload_base64, "base64"),
      headers: new Map([
        ["Salt-Tag", vector.tag],
        ["Salt-Master", "nats%20master"],
        ["Salt-Origin", "web01.example.com"],
        ["Content-Type", "application/json"],
      ]),
    };
    const event = decodeMessage(message);

    assert.equal(event.tag, vector.tag);
    assert.equal(event.data.fun, "test.ping");
    assert.equal(event.master, "nats master");
    assert.equal(event.origin, "web01.example.com");
    assert.equal(event.truncated, 0);
    assert.equal(event.headers["Content-Type"], "application/json");
  });
});
