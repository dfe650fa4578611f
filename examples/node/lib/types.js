// Error and value types shared by the decoder's modules.

/** Error for a subject, header or payload that the engine never writes. */
export class DecodeError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "DecodeError";
  }
}

/** Salt's constant type (msgpack extension type 79), such as a `NOT_SET` marker. */
export class SaltConstant {
  constructor(name, value = null) {
    this.name = name;
    this.value = value;
  }
}

/** A msgpack extension value of a type this module does not know. */
export class ExtType {
  constructor(code, data) {
    this.code = code;
    this.data = data;
  }
}

/** Return `text` as a quoted string for error messages. */
export function quote(text) {
  return JSON.stringify(String(text));
}

/** Return whether `value` is an object literal, such as JSON.parse creates. */
export function isPlainObject(value) {
  if (value === null || typeof value !== "object") {
    return false;
  }
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** Return a payload as a Uint8Array. Throws TypeError for any other type. */
export function toBytes(payload) {
  if (payload instanceof Uint8Array) {
    return payload;
  }
  if (payload instanceof ArrayBuffer) {
    return new Uint8Array(payload);
  }
  throw new TypeError("payload must be a Uint8Array (or Buffer) or an ArrayBuffer");
}
