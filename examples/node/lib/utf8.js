// UTF-8 with Python's "surrogatepass" and "surrogateescape" error handlers.

import { DecodeError } from "./types.js";

/**
 * Encode a string as UTF-8, writing a lone surrogate as its three bytes.
 *
 * Python's "surrogatepass" error handler does the same, so a tag that Salt decoded
 * with "surrogateescape" maps to the same bytes on both sides. TextEncoder would
 * replace a lone surrogate with U+FFFD instead.
 */
export function utf8Encode(text) {
  const bytes = [];
  for (let index = 0; index < text.length; index++) {
    let code = text.charCodeAt(index);
    if (code >= 0xd800 && code <= 0xdbff && index + 1 < text.length) {
      const next = text.charCodeAt(index + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        code = 0x10000 + ((code - 0xd800) << 10) + (next - 0xdc00);
        index++;
      }
    }

    if (code < 0x80) {
      bytes.push(code);
    } else if (code < 0x800) {
      bytes.push(0xc0 | (code >> 6), 0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      bytes.push(0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f));
    } else {
      bytes.push(
        0xf0 | (code >> 18),
        0x80 | ((code >> 12) & 0x3f),
        0x80 | ((code >> 6) & 0x3f),
        0x80 | (code & 0x3f),
      );
    }
  }
  return Uint8Array.from(bytes);
}

/**
 * Return the length of the UTF-8 sequence at `position`, or 0 when it is invalid.
 *
 * With `allowSurrogates`, the three-byte forms of U+D800..U+DFFF count as valid, as
 * Python's "surrogatepass" handler reads them.
 */
function utf8SequenceLength(bytes, position, allowSurrogates) {
  const first = bytes[position];
  if (first < 0x80) {
    return 1;
  }

  let length;
  let low = 0x80;
  let high = 0xbf;
  if (first >= 0xc2 && first <= 0xdf) {
    length = 2;
  } else if (first >= 0xe0 && first <= 0xef) {
    length = 3;
    if (first === 0xe0) {
      low = 0xa0; // shorter forms are overlong
    } else if (first === 0xed && !allowSurrogates) {
      high = 0x9f; // 0xa0..0xbf would encode a surrogate
    }
  } else if (first >= 0xf0 && first <= 0xf4) {
    length = 4;
    if (first === 0xf0) {
      low = 0x90;
    } else if (first === 0xf4) {
      high = 0x8f; // above U+10FFFF
    }
  } else {
    return 0;
  }

  if (position + length > bytes.length) {
    return 0;
  }
  const second = bytes[position + 1];
  if (second < low || second > high) {
    return 0;
  }
  for (let offset = 2; offset < length; offset++) {
    const byte = bytes[position + offset];
    if (byte < 0x80 || byte > 0xbf) {
      return 0;
    }
  }
  return length;
}

function codePointAt(bytes, position, length) {
  const first = bytes[position];
  if (length === 1) {
    return first;
  }
  let code = first & (0xff >> (length + 1));
  for (let offset = 1; offset < length; offset++) {
    code = (code << 6) | (bytes[position + offset] & 0x3f);
  }
  return code;
}

/**
 * Decode UTF-8 bytes as Python does with the error handler `errors`.
 *
 * "surrogatepass" also accepts encoded surrogates and raises on anything else that
 * is invalid. "surrogateescape" turns each byte that is part of no valid sequence
 * into the lone surrogate U+DC00 + byte. Throws DecodeError on invalid input with
 * "surrogatepass".
 */
export function utf8Decode(bytes, errors = "surrogatepass") {
  const escape = errors === "surrogateescape";
  const units = [];
  let text = "";
  let position = 0;
  while (position < bytes.length) {
    const length = utf8SequenceLength(bytes, position, !escape);
    if (length === 0) {
      if (!escape) {
        throw new DecodeError(
          `invalid UTF-8: byte 0x${hex2(bytes[position])} at index ${position} ` +
            "does not start a valid sequence",
        );
      }
      units.push(0xdc00 + bytes[position]);
      position += 1;
    } else {
      const code = codePointAt(bytes, position, length);
      if (code >= 0x10000) {
        units.push(0xd800 + ((code - 0x10000) >> 10), 0xdc00 + ((code - 0x10000) & 0x3ff));
      } else {
        units.push(code);
      }
      position += length;
    }

    // Flush in chunks, because String.fromCharCode takes its units as arguments.
    if (units.length >= 8192) {
      text += String.fromCharCode(...units);
      units.length = 0;
    }
  }
  return text + String.fromCharCode(...units);
}

const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// TextDecoder is fast but rejects encoded surrogates, which are rare, so it runs first
// and the byte-by-byte decoder runs only when it fails.
export function decodeText(bytes, errors) {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return utf8Decode(bytes, errors);
  }
}

/** Return a byte as two uppercase hex digits. */
export function hex2(byte) {
  return byte.toString(16).toUpperCase().padStart(2, "0");
}
