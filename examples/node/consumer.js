#!/usr/bin/env node
// Print the salt-master events that the salt-nats engine publishes on NATS, one line
// per event.
//
//   node consumer.js [server] [subject] [--prefix salt.events] [--json]
//
// The server defaults to nats://127.0.0.1:4222 and the subject to "<prefix>.>".
// NATS_USER and NATS_PASSWORD, or NATS_TOKEN, set the credentials; they are read from
// the environment so that they do not show up in the process list. Progress and
// errors go to stderr, events to stdout. SIGINT or SIGTERM drains the subscription
// and exits.

import { parseArgs } from "node:util";

import { connect } from "@nats-io/transport-node";

import { DEFAULT_EVENT_PREFIX, decodeMessage, jsonReplacer } from "./decode.js";

const USAGE = `usage: node consumer.js [server] [subject] [--prefix PREFIX] [--json]

Subscribe to salt-nats events and print one line per event.

  server           NATS server URL (default nats://127.0.0.1:4222)
  subject          subject to subscribe to (default "<prefix>.>")
  --prefix PREFIX  the engine's subject_prefix (default ${DEFAULT_EVENT_PREFIX})
  --json           print each event as one JSON object instead of a summary line

Environment: NATS_USER and NATS_PASSWORD, or NATS_TOKEN.`;

function parseCommandLine(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      prefix: { type: "string", default: DEFAULT_EVENT_PREFIX },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (positionals.length > 2) {
    throw new Error(`expected at most 2 arguments (server, subject), got ${positionals.length}`);
  }
  const [server = "nats://127.0.0.1:4222", subject = `${values.prefix}.>`] = positionals;
  return { server, subject, prefix: values.prefix, json: values.json };
}

// Write a value as it is when it is plain text, and as JSON text otherwise, so that
// ids with spaces or "=" keep the line readable by `key=value` parsers.
function formatField(name, value) {
  const text = typeof value === "string" ? value : JSON.stringify(value, jsonReplacer);
  const plain = /^[\x21-\x7e]+$/.test(text) && !/["=]/.test(text);
  return `${name}=${plain ? text : JSON.stringify(text)}`;
}

/**
 * Format one decoded event as a summary line: receive time, tag, then the fields that
 * a job event or a minion event carries.
 */
function summarize(event, receivedAt = new Date()) {
  const fields = [receivedAt.toISOString(), formatField("tag", event.tag)];
  const data = event.data !== null && typeof event.data === "object" ? event.data : {};

  if (event.origin !== undefined) {
    fields.push(formatField("minion", event.origin));
  }
  for (const key of ["fun", "jid", "success", "retcode"]) {
    if (data[key] !== undefined) {
      fields.push(formatField(key, data[key]));
    }
  }
  if (Array.isArray(data.minions)) {
    fields.push(formatField("minions", data.minions.join(",")));
  }
  if (event.truncated > 0) {
    fields.push(formatField("truncated", event.truncated));
  }
  return fields.join(" ");
}

function credentials() {
  const { NATS_USER: user, NATS_PASSWORD: pass, NATS_TOKEN: token } = process.env;
  if (token) {
    return { token };
  }
  if (user) {
    return { user, pass: pass ?? "" };
  }
  return {};
}

async function logStatus(connection) {
  for await (const status of connection.status()) {
    if (["disconnect", "reconnect", "error"].includes(status.type)) {
      const detail = status.server ?? status.error?.message ?? "";
      console.error(`consumer: ${status.type} ${detail}`.trimEnd());
    }
  }
}

async function main() {
  let options;
  try {
    options = parseCommandLine(process.argv.slice(2));
  } catch (error) {
    console.error(`consumer: ${error.message}\n\n${USAGE}`);
    process.exit(2);
  }

  let connection;
  try {
    connection = await connect({
      servers: options.server,
      name: "salt-nats-node-consumer",
      maxReconnectAttempts: -1,
      ...credentials(),
    });
  } catch (error) {
    console.error(`consumer: cannot connect to ${options.server}: ${error.message}`);
    process.exit(1);
  }
  logStatus(connection).catch(() => {});

  let stopping = false;
  const stop = (signal) => {
    if (stopping) {
      return;
    }
    stopping = true;
    console.error(`consumer: ${signal} received, draining`);
    connection.drain().catch((error) => console.error(`consumer: drain failed: ${error.message}`));
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));

  // The signal handlers are in place before the "subscribed" line, which callers
  // may take as the sign that the consumer is ready.
  let subscription;
  try {
    subscription = connection.subscribe(options.subject);
    // The flush returns once the server has the subscription, so events published
    // after the next line are received.
    await connection.flush();
  } catch (error) {
    if (stopping) {
      console.error("consumer: stopped before the subscription was ready");
      return;
    }
    throw error;
  }
  console.error(`consumer: subscribed to ${options.subject} on ${connection.getServer()}`);

  let received = 0;
  let skipped = 0;
  for await (const message of subscription) {
    let event;
    try {
      event = decodeMessage(message, { prefix: options.prefix });
    } catch (error) {
      skipped++;
      console.error(`consumer: skipped message on ${message.subject}: ${error.message}`);
      continue;
    }
    received++;
    if (options.json) {
      console.log(JSON.stringify(event, jsonReplacer));
    } else {
      console.log(summarize(event));
    }
  }

  const closeError = await connection.closed();
  console.error(`consumer: stopped after printing ${received} events and skipping ${skipped}`);
  if (closeError) {
    console.error(`consumer: connection closed with an error: ${closeError.message}`);
    process.exit(1);
  }
}

await main();
