#!/usr/bin/env node
// Drive the page in headless Chromium for tests/integration/test_browser.py.
//
//   NATS_USER=... NATS_PASSWORD=... node tools/drive-page.mjs --url URL [--chromium PATH]
//
// It opens URL, fills in the user and password, connects, and prints {"ready": ...}
// as one JSON line once the page shows "connected". Then it reads one JSON command
// per line on stdin and prints one JSON reply per command (see COMMANDS). Replies
// carry {"error": message} when a command fails. Chromium may load pages from
// 127.0.0.1 only; every other request is aborted.

import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

// Flags for Chromium on a closed network: no background requests to Google's
// services, which the network would refuse at every start.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const { values: options } = parseArgs({
  options: {
    url: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
  },
});
if (!options.url || new URL(options.url).hostname !== "127.0.0.1") {
  console.error("drive-page: --url must be a page on 127.0.0.1");
  process.exit(2);
}

// Console errors and uncaught exceptions of the page, reported with every reply.
const problems = [];

function reply(message) {
  process.stdout.write(`${JSON.stringify({ ...message, problems })}\n`);
}

// Read the job card of `jid` as the user sees it.
async function readJob(page, jid) {
  return page.locator(`.job[data-jid="${jid}"]`).evaluate((card) => ({
    jid: card.dataset.jid,
    state: card.dataset.state,
    title: card.querySelector(".job-title").textContent,
    meta: card.querySelector(".job-meta").textContent,
    minions: Array.from(card.querySelectorAll(".minion"), (item) => ({
      id: item.dataset.minion,
      status: item.dataset.status,
      text: item.textContent,
    })),
  }));
}

async function readDetail(page, expectedTitle) {
  await page.waitForFunction(
    (title) => document.getElementById("detail-title").textContent === title,
    expectedTitle,
    { timeout: 5000 },
  );
  return {
    title: await page.locator("#detail-title").textContent(),
    detail: await page.locator("#detail").textContent(),
  };
}

const COMMANDS = {
  // Wait until the job's card shows `minion` with `status`, and return the card.
  async wait_minion(page, { jid, minion, status, timeout = 30000 }) {
    const minionSelector = `.minion[data-minion="${minion}"][data-status="${status}"]`;
    const selector = `.job[data-jid="${jid}"] ${minionSelector}`;
    await page.waitForSelector(selector, { timeout });
    return { job: await readJob(page, jid) };
  },

  // Type into the filter fields and return the tags of the rows shown.
  async filter(page, { tag = "", minion = "", fun = "" }) {
    await page.fill("#filter-tag", tag);
    await page.fill("#filter-minion", minion);
    await page.fill("#filter-fun", fun);
    return {
      rows: await page.locator("#events tbody tr").evaluateAll((rows) =>
        rows.map((row) => ({
          tag: row.dataset.tag,
          cells: Array.from(row.cells, (cell) => cell.textContent),
        })),
      ),
      count: await page.locator("#event-count").textContent(),
    };
  },

  // Click the newest row with this tag and return the detail view.
  async select(page, { tag }) {
    await page.locator(`#events tbody tr[data-tag="${tag}"]`).first().click();
    return readDetail(page, tag);
  },

  // Click a minion in a job card and return the detail view of its return.
  async select_minion(page, { jid, minion }) {
    await page.locator(`.job[data-jid="${jid}"] .minion[data-minion="${minion}"]`).click();
    return readDetail(page, `salt/job/${jid}/ret/${minion}`);
  },

  async screenshot(page, { path }) {
    await page.screenshot({ path });
    return { path };
  },

  async status(page) {
    return {
      state: await page.locator("#status").getAttribute("data-state"),
      text: await page.locator("#status").textContent(),
    };
  },
};

async function main() {
  const browser = await chromium.launch({
    executablePath: options.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    await context.route("**/*", (route) => {
      const { hostname } = new URL(route.request().url());
      return hostname === "127.0.0.1" ? route.continue() : route.abort();
    });
    const page = await context.newPage();
    page.on("console", (message) => {
      if (message.type() === "error") {
        problems.push(`console: ${message.text()}`);
      }
    });
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));

    await page.goto(options.url);
    await page.fill("#user", process.env.NATS_USER ?? "");
    await page.fill("#password", process.env.NATS_PASSWORD ?? "");
    await page.click("#connect");
    await page.waitForSelector('#status[data-state="connected"]', { timeout: 15000 });
    reply({ ready: true, status: await COMMANDS.status(page) });

    const lines = createInterface({ input: process.stdin });
    for await (const line of lines) {
      if (line.trim() === "") {
        continue;
      }
      const request = JSON.parse(line);
      if (request.command === "quit") {
        break;
      }
      const handler = COMMANDS[request.command];
      try {
        if (handler === undefined) {
          throw new Error(`unknown command ${JSON.stringify(request.command)}`);
        }
        reply({ command: request.command, ...(await handler(page, request)) });
      } catch (error) {
        reply({ command: request.command, error: error.message });
      }
    }
  } finally {
    await browser.close();
  }
}

// stdin stays open after "quit", so the process exits explicitly.
main().then(
  () => process.exit(0),
  (error) => {
    reply({ error: error.message });
    process.exit(1);
  },
);
