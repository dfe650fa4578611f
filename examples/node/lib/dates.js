// Datetimes and dates of the engine's payloads, as text in Python's isoformat() form,
// as Date objects or as values of the caller's own type.

import { DecodeError, quote } from "./types.js";

// YYYY-MM-DD, then optionally "T" or " ", HH[:MM[:SS[.ffffff]]] and a UTC offset
// ("Z" or ±HH:MM[:SS[.ffffff]]).
const ISO_DATETIME_RE = new RegExp(
  "^(\\d{4})-(\\d{2})-(\\d{2})" +
    "(?:[T ](\\d{2})(?::(\\d{2})(?::(\\d{2})(?:[.,](\\d{1,6}))?)?)?" +
    "(Z|[+-]\\d{2}:\\d{2}(?::\\d{2}(?:\\.\\d{1,6})?)?)?)?$",
);
const ISO_DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const SALT_DATETIME_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{1,6})$/;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year, month) {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1];
}

function checkDate(year, month, day) {
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) {
    throw new DecodeError(`invalid date ${year}-${month}-${day}`);
  }
}

function pad(number, width) {
  return String(number).padStart(width, "0");
}

// The parts of a datetime, with `iso` written as Python's datetime.isoformat() writes
// it, so that the same value has the same text on both sides.
function datetimeParts(year, month, day, hour, minute, second, fraction, offset) {
  checkDate(year, month, day);
  if (hour > 23 || minute > 59 || second > 59) {
    throw new DecodeError(`invalid time ${hour}:${minute}:${second}`);
  }
  const microsecond = Number((fraction ?? "").padEnd(6, "0"));

  const date = `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}`;
  let iso = `${date}T${pad(hour, 2)}:${pad(minute, 2)}:${pad(second, 2)}`;
  if (microsecond !== 0) {
    iso += `.${pad(microsecond, 6)}`;
  }

  let offsetMicroseconds = null;
  if (offset !== undefined && offset !== null) {
    offsetMicroseconds = 0;
    if (offset !== "Z") {
      const match = /^([+-])(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?$/.exec(offset);
      const [, sign, hours, minutes, seconds = "0", micros = ""] = match;
      const size =
        ((Number(hours) * 60 + Number(minutes)) * 60 + Number(seconds)) * 1e6 +
        Number(micros.padEnd(6, "0"));
      if (Number(hours) > 23 || Number(minutes) > 59 || Number(seconds) > 59) {
        throw new DecodeError(`invalid UTC offset ${offset}`);
      }
      offsetMicroseconds = sign === "-" ? -size : size;
    }
    iso += formatOffset(offsetMicroseconds);
  }
  return { year, month, day, hour, minute, second, microsecond, offsetMicroseconds, iso };
}

function formatOffset(offsetMicroseconds) {
  const sign = offsetMicroseconds < 0 ? "-" : "+";
  let rest = Math.abs(offsetMicroseconds);
  const micros = rest % 1e6;
  rest = (rest - micros) / 1e6;
  const seconds = rest % 60;
  rest = (rest - seconds) / 60;
  let text = `${sign}${pad(Math.floor(rest / 60), 2)}:${pad(rest % 60, 2)}`;
  if (seconds !== 0 || micros !== 0) {
    text += `:${pad(seconds, 2)}`;
  }
  if (micros !== 0) {
    text += `.${pad(micros, 6)}`;
  }
  return text;
}

function partsToDate(parts) {
  const date = new Date(0);
  date.setUTCFullYear(parts.year, parts.month - 1, parts.day);
  date.setUTCHours(parts.hour, parts.minute, parts.second, Math.floor(parts.microsecond / 1000));
  if (parts.offsetMicroseconds !== null) {
    date.setTime(date.getTime() - Math.round(parts.offsetMicroseconds / 1000));
  }
  return date;
}

/** Parse ISO 8601 datetime text. Throws DecodeError unless it is a valid datetime. */
export function parseIsoDatetime(text) {
  const match = typeof text === "string" ? ISO_DATETIME_RE.exec(text) : null;
  if (match === null) {
    throw new DecodeError(`invalid ISO 8601 datetime ${quote(text)}`);
  }
  const [, year, month, day, hour = "0", minute = "0", second = "0", fraction, offset] = match;
  return datetimeParts(
    Number(year),
    Number(month),
    Number(day),
    Number(hour),
    Number(minute),
    Number(second),
    fraction,
    offset,
  );
}

/** Parse "YYYY-MM-DD". Throws DecodeError unless it is a valid date. */
export function parseIsoDate(text) {
  const match = typeof text === "string" ? ISO_DATE_RE.exec(text) : null;
  if (match === null) {
    throw new DecodeError(`invalid ISO 8601 date ${quote(text)}`);
  }
  const [year, month, day] = match.slice(1).map(Number);
  checkDate(year, month, day);
  return datetimeParts(year, month, day, 0, 0, 0, undefined, null);
}

// Salt's extension type 78 carries "%Y%m%dT%H:%M:%S.%f" in ASCII.
export function parseSaltDatetime(bytes) {
  const text = String.fromCharCode(...bytes);
  const match = SALT_DATETIME_RE.exec(text);
  if (match === null) {
    throw new DecodeError(`invalid Salt datetime extension data ${quote(text)}`);
  }
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number);
  return datetimeParts(year, month, day, hour, minute, second, match[7], null);
}

// Turn parsed date parts into the value that the `dates` option selects.
export function makeDate(parts, kind, dates) {
  const iso = kind === "date" ? parts.iso.slice(0, 10) : parts.iso;
  if (typeof dates === "function") {
    return dates(iso, kind);
  }
  if (dates === "Date") {
    return partsToDate(parts);
  }
  return iso;
}
