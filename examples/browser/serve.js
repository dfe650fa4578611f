#!/usr/bin/env node
// Serve the salt-nats browser page and its client library from this folder.
//
//   node serve.js [--host 127.0.0.1] [--port 8000]
//
// Nothing is fetched from the internet: the NATS client comes from node_modules
// (`npm ci`), bundled at start-up with esbuild into one ES module, because
// @nats-io/nats-core ships CommonJS, which a browser cannot import. The shared decoder
// is examples/node/decode.js with its lib/ modules. With --port 0 the system picks a
// free port. The server prints "serving <url>" on stdout once it listens.

import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));

const JAVASCRIPT = "text/javascript; charset=utf-8";
const DECODER_FOLDER = join(here, "..", "node");

// Every file the page needs, by URL path. Any other path gets a 404 response.
const FILES = {
  "/": { path: join(here, "index.html"), type: "text/html; charset=utf-8" },
  "/index.html": { path: join(here, "index.html"), type: "text/html; charset=utf-8" },
  "/app.js": { path: join(here, "app.js"), type: JAVASCRIPT },
  "/jobs.js": { path: join(here, "jobs.js"), type: JAVASCRIPT },
  "/style.css": { path: join(here, "style.css"), type: "text/css; charset=utf-8" },
  "/decode.js": { path: join(DECODER_FOLDER, "decode.js"), type: JAVASCRIPT },
};
for (const name of ["base64", "dates", "msgpack", "sha256", "types", "utf8"]) {
  FILES[`/lib/${name}.js`] = { path: join(DECODER_FOLDER, "lib", `${name}.js`), type: JAVASCRIPT };
}
const CLIENT_PATH = "/vendor/nats-core.js";

// The page may load only its own files and open WebSocket connections (to nats-server,
// on another port, which 'self' would not cover).
const SECURITY_HEADERS = {
  "Content-Security-Policy":
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; " +
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
};

/** Bundle the NATS client's browser API from node_modules into one ES module. */
async function bundleClient() {
  const result = await build({
    stdin: {
      contents: 'export { wsconnect } from "@nats-io/nats-core";',
      resolveDir: here,
      loader: "js",
    },
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "warning",
  });
  return result.outputFiles[0].contents;
}

function parseCommandLine() {
  const { values } = parseArgs({
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8000" },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`invalid --port ${JSON.stringify(values.port)}; use 0 to 65535`);
  }
  return { host: values.host, port };
}

async function main() {
  let options;
  try {
    options = parseCommandLine();
  } catch (error) {
    console.error(`serve: ${error.message}`);
    process.exit(2);
  }

  const client = await bundleClient();

  const server = createServer(async (request, response) => {
    const path = new URL(request.url, "http://localhost").pathname;
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { ...SECURITY_HEADERS, Allow: "GET, HEAD" }).end();
      return;
    }

    let body;
    let type;
    if (path === CLIENT_PATH) {
      body = client;
      type = JAVASCRIPT;
    } else if (Object.hasOwn(FILES, path)) {
      try {
        body = await readFile(FILES[path].path);
      } catch (error) {
        console.error(`serve: cannot read ${FILES[path].path}: ${error.message}`);
        response.writeHead(500, SECURITY_HEADERS).end();
        return;
      }
      type = FILES[path].type;
    } else {
      response.writeHead(404, { ...SECURITY_HEADERS, "Content-Type": "text/plain" });
      response.end("not found\n");
      return;
    }

    response.writeHead(200, {
      ...SECURITY_HEADERS,
      "Content-Type": type,
      "Content-Length": body.length,
    });
    response.end(request.method === "HEAD" ? undefined : body);
  });

  server.on("error", (error) => {
    console.error(`serve: cannot listen on ${options.host}:${options.port}: ${error.message}`);
    process.exit(1);
  });
  server.listen(options.port, options.host, () => {
    const { address, port } = server.address();
    const host = address.includes(":") ? `[${address}]` : address;
    console.log(`serving http://${host}:${port}/`);
  });

  const stop = (signal) => {
    console.error(`serve: ${signal} received, stopping`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

await main();
