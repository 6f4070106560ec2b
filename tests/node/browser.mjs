// Opens pages in headless Chromium (the system's, through playwright-core) and prints
// what each page reports.
//
//   node browser.mjs '{"pages": ["http://127.0.0.1:PAGE/?api=http://127.0.0.1:API"]}'
//
// A page reports by setting `window.__done` and `window.__result`; each prints as
// {"type": "page", "url", "result", "console": [...]}. CHROMIUM overrides the browser.
import { chromium } from "playwright-core";

const opts = JSON.parse(process.argv[2]);
const out = (line) => process.stdout.write(JSON.stringify(line) + "\n");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  headless: true,
});
try {
  for (const url of opts.pages) {
    const page = await browser.newPage();
    const consoleLines = [];
    page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
    await page.goto(url);
    await page.waitForFunction(() => window.__done === true, null, { timeout: opts.timeout_ms ?? 20000 });
    const result = await page.evaluate(() => window.__result);
    out({ type: "page", url, result, console: consoleLines });
    await page.close();
  }
} finally {
  await browser.close();
}
