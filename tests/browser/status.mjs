// Loads a running daemon's status page in Debian's headless Chromium
// (playwright-core), checks what it shows, drops a plugin into the
// daemon's folder while the page is open and waits for the page to list
// it, then saves a screenshot. Prints what it saw as one JSON line.
//
// node status.mjs ADMIN_URL PLUGIN_DIR NEW_PLUGIN.wasm SCREENSHOT.png
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const [admin, pluginDir, newPlugin, screenshot] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const seen = { requests: [], console: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  // Everything the page loads must come from the daemon itself.
  page.on("request", (r) => seen.requests.push(r.url()));
  page.on("console", (m) => seen.console.push(m.type() + ": " + m.text()));
  page.on("pageerror", (e) => seen.console.push("pageerror: " + e.message));
  await page.goto(admin + "/status");
  await page.waitForFunction(() => Number(document.body.dataset.refreshed || 0) >= 1, null, { timeout: 30000 });
  seen.role = await page.textContent("#role");
  seen.health = await page.textContent("#health");
  seen.before = await page.$$eval("#plugins tbody tr[data-key]", (rows) => rows.map((r) => r.dataset.key));
  const refreshedBefore = await page.evaluate(() => Number(document.body.dataset.refreshed));

  // Drop a plugin in (hidden name, then rename, as the docs say).
  const dest = path.join(pluginDir, path.basename(newPlugin));
  fs.copyFileSync(newPlugin, path.join(pluginDir, "." + path.basename(newPlugin) + ".tmp"));
  fs.renameSync(path.join(pluginDir, "." + path.basename(newPlugin) + ".tmp"), dest);
  await page.waitForSelector('#plugins tbody tr[data-key="purchase_spellbook"]', { timeout: 60000 });
  seen.after = await page.$$eval("#plugins tbody tr[data-key]", (rows) => rows.map((r) => r.dataset.key));
  seen.refreshes = (await page.evaluate(() => Number(document.body.dataset.refreshed))) - refreshedBefore;

  // Tables, partitions, rejections and rates fill in under load.
  await page.waitForSelector('#tables tbody tr[data-key="sword_purchases"]', { timeout: 60000 });
  await page.waitForFunction(() => {
    const t = document.querySelector("#rate-accepted").textContent;
    return t !== "–" && t !== "0";
  }, null, { timeout: 60000 });
  await page.waitForFunction(() => document.querySelectorAll("#rejections tbody tr td.mono.wrap").length > 0, null, { timeout: 60000 });
  await page.waitForFunction(() => document.querySelectorAll("#refused tbody tr td.bad").length > 0, null, { timeout: 60000 });
  seen.tables = await page.$$eval("#tables tbody tr[data-key]", (rows) =>
    rows.map((r) => ({ name: r.dataset.key, rows: r.children[1].textContent, files: r.children[2].textContent })));
  seen.partitions = await page.$$eval("#partitions tbody tr", (rows) => rows.map((r) => r.textContent));
  seen.rejections = await page.$$eval("#rejections tbody tr", (rows) =>
    rows.map((r) => Array.from(r.children).map((c) => c.textContent)));
  seen.refused = await page.$$eval("#refused tbody tr", (rows) => rows.map((r) => r.textContent));
  seen.rate = await page.textContent("#rate-accepted");
  seen.rows_rate = await page.textContent("#rate-rows");
  await page.screenshot({ path: screenshot, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
