// Padded base64, as Python's base64 module writes it.

import { DecodeError } from "./types.js";

const BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_VALUES = new Map(Array.from(BASE64_ALPHABET, (char, index) => [char, index]));

/**
 * Decode padded base64 as the engine writes it, and throw DecodeError on anything else.
 *
 * NOTE: Python 3.11's b64decode(validate=True) also accepts stray "=" after a complete
 * group ("AAAA="), which no encoder writes. This decoder rejects it.
 */
export function base64ToBytes(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new DecodeError("invalid base64: only A-Z, a-z, 0-9, '+', '/' and padding allowed");
  }
  const dataLength = text.replace(/=+$/, "").length;
  const padding = text.length - dataLength;
  if (dataLength % 4 === 1 || padding !== (4 - (dataLength % 4)) % 4) {
    throw new DecodeError("invalid base64: incorrect padding");
  }

  const bytes = new Uint8Array(Math.floor((dataLength * 3) / 4));
  let bits = 0;
  let bitCount = 0;
  let position = 0;
  for (let index = 0; index < dataLength; index++) {
    bits = (bits << 6) | BASE64_VALUES.get(text[index]);
    bitCount += 6;
    if (bitCount >= 8) {
      bitCount -= 8;
      bytes[position++] = (bits >> bitCount) & 0xff;
    }
  }
  return bytes;
}

/** Encode bytes as padded base64, as Python's base64.b64encode writes it. */
export function bytesToBase64(bytes) {
  let text = "";
  for (let index = 0; index < bytes.length; index += 3) {
    const chunk = (bytes[index] << 16) | ((bytes[index + 1] ?? 0) << 8) | (bytes[index + 2] ?? 0);
    text += BASE64_ALPHABET[(chunk >> 18) & 63] + BASE64_ALPHABET[(chunk >> 12) & 63];
    text += index + 1 < bytes.length ? BASE64_ALPHABET[(chunk >> 6) & 63] : "=";
    text += index + 2 < bytes.length ? BASE64_ALPHABET[chunk & 63] : "=";
  }
  return text;
}
