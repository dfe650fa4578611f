// A msgpack reader for payloads in the engine's msgpack format.

import { makeDate, parseSaltDatetime } from "./dates.js";
import { decodeText, hex2 } from "./utf8.js";
import { DecodeError, ExtType, SaltConstant, isPlainObject, toBytes } from "./types.js";

// Salt's own msgpack extension type codes (salt/payload.py in 3007 and 3008).
export const EXT_DATETIME = 78;
export const EXT_SALT_CONSTANT = 79;

// Deeper nesting is rejected, which keeps the recursive reader far from the stack limit.
const MSGPACK_MAX_DEPTH = 512;

class MsgpackReader {
  constructor(bytes, options) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.position = 0;
    this.options = options;
  }

  take(length) {
    if (this.position + length > this.bytes.length) {
      throw new DecodeError(
        `payload is not valid msgpack: it ends after ${this.bytes.length} bytes, ` +
          `inside a value that needs ${this.position + length}`,
      );
    }
    const start = this.position;
    this.position += length;
    return start;
  }

  uint(size) {
    const at = this.take(size);
    switch (size) {
      case 1:
        return this.view.getUint8(at);
      case 2:
        return this.view.getUint16(at);
      case 4:
        return this.view.getUint32(at);
      default:
        return safeInteger(this.view.getBigUint64(at));
    }
  }

  int(size) {
    const at = this.take(size);
    switch (size) {
      case 1:
        return this.view.getInt8(at);
      case 2:
        return this.view.getInt16(at);
      case 4:
        return this.view.getInt32(at);
      default:
        return safeInteger(this.view.getBigInt64(at));
    }
  }

  raw(length) {
    const at = this.take(length);
    return this.bytes.slice(at, at + length);
  }

  read(depth = 0) {
    if (depth > MSGPACK_MAX_DEPTH) {
      throw new DecodeError(
        `payload is not valid msgpack: nested deeper than ${MSGPACK_MAX_DEPTH}`,
      );
    }
    const type = this.uint(1);

    if (type <= 0x7f) return type;
    if (type >= 0xe0) return type - 0x100;
    if (type >= 0x80 && type <= 0x8f) return this.map(type & 0x0f, depth);
    if (type >= 0x90 && type <= 0x9f) return this.array(type & 0x0f, depth);
    if (type >= 0xa0 && type <= 0xbf) return this.str(type & 0x1f);

    switch (type) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.raw(this.uint(1));
      case 0xc5:
        return this.raw(this.uint(2));
      case 0xc6:
        return this.raw(this.uint(4));
      case 0xc7:
        return this.ext(this.uint(1));
      case 0xc8:
        return this.ext(this.uint(2));
      case 0xc9:
        return this.ext(this.uint(4));
      case 0xca:
        return this.view.getFloat32(this.take(4));
      case 0xcb:
        return this.view.getFloat64(this.take(8));
      case 0xcc:
        return this.uint(1);
      case 0xcd:
        return this.uint(2);
      case 0xce:
        return this.uint(4);
      case 0xcf:
        return this.uint(8);
      case 0xd0:
        return this.int(1);
      case 0xd1:
        return this.int(2);
      case 0xd2:
        return this.int(4);
      case 0xd3:
        return this.int(8);
      case 0xd4:
        return this.ext(1);
      case 0xd5:
        return this.ext(2);
      case 0xd6:
        return this.ext(4);
      case 0xd7:
        return this.ext(8);
      case 0xd8:
        return this.ext(16);
      case 0xd9:
        return this.str(this.uint(1));
      case 0xda:
        return this.str(this.uint(2));
      case 0xdb:
        return this.str(this.uint(4));
      case 0xdc:
        return this.array(this.uint(2), depth);
      case 0xdd:
        return this.array(this.uint(4), depth);
      case 0xde:
        return this.map(this.uint(2), depth);
      case 0xdf:
        return this.map(this.uint(4), depth);
      default:
        throw new DecodeError(
          `payload is not valid msgpack: unused type byte 0x${hex2(type)} ` +
            `at index ${this.position - 1}`,
        );
    }
  }

  str(length) {
    const at = this.take(length);
    // Strings that are not UTF-8 keep their bytes as lone surrogates, as the Python
    // decoder's "surrogateescape" does.
    return decodeText(this.bytes.subarray(at, at + length), "surrogateescape");
  }

  array(length, depth) {
    const items = [];
    for (let index = 0; index < length; index++) {
      items.push(this.read(depth + 1));
    }
    return items;
  }

  // A map becomes a plain object when all its keys are strings, and a Map otherwise.
  map(length, depth) {
    const entries = [];
    let allStrings = true;
    for (let index = 0; index < length; index++) {
      const key = this.read(depth + 1);
      if (Array.isArray(key) || key instanceof Map || isPlainObject(key)) {
        throw new DecodeError(
          "payload is not valid msgpack for Python: a map key is an array or a map",
        );
      }
      allStrings &&= typeof key === "string";
      entries.push([key, this.read(depth + 1)]);
    }
    if (!allStrings) {
      return new Map(entries);
    }
    const object = {};
    for (const [key, value] of entries) {
      // defineProperty keeps a "__proto__" key an ordinary property.
      Object.defineProperty(object, key, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return object;
  }

  ext(length) {
    const code = this.int(1);
    const data = this.raw(length);
    if (code === EXT_DATETIME) {
      return makeDate(parseSaltDatetime(data), "datetime", this.options.dates);
    }
    if (code === EXT_SALT_CONSTANT) {
      const fields = new MsgpackReader(data, this.options).readAll();
      if (!Array.isArray(fields) || fields.length !== 2) {
        throw new DecodeError("Salt constant is not a [name, value] pair");
      }
      return new SaltConstant(fields[0], fields[1]);
    }
    return new ExtType(code, data);
  }

  readAll() {
    const value = this.read();
    if (this.position !== this.bytes.length) {
      throw new DecodeError(
        `payload is not valid msgpack: ${this.bytes.length - this.position} bytes of extra data`,
      );
    }
    return value;
  }
}

// 64-bit integers become numbers when that is exact, and BigInt otherwise.
function safeInteger(value) {
  const number = Number(value);
  return Number.isSafeInteger(number) ? number : value;
}

/**
 * Decode a msgpack value with Salt's extension types 78 (datetime) and 79 (constant).
 *
 * Maps with only string keys become plain objects, other maps become Map objects.
 * `bin` values become Uint8Array, and integers outside the safe range BigInt.
 */
export function unpackMsgpack(bytes, options = {}) {
  return new MsgpackReader(toBytes(bytes), options).readAll();
}
