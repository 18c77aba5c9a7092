// Drives the console in a real browser (Debian's Chromium through
// playwright-core) against a running gateway. Started by tests/console.rs,
// which passes everything in the environment:
//
//   MANIFOLD_URL        http://127.0.0.1:PORT (the gateway)
//   ADMIN_TOKEN         a token with admin = true
//   USER_TOKEN          a token whose allow-list names one backend (`fx`)
//   CONFIG_FILE         the config file to edit (the gateway reads it through a symlink)
//   CONFIG_ADDED        config text that adds backend `extra`
//   CONFIG_BROKEN       config text that does not validate
//   ARTIFACTS           where screenshots go
//   TEST_DEPS           the .test-deps folder holding node_modules/playwright-core
//
// Prints `ok - STEP` per step; exits 1 at the first failure, after a
// screenshot `fail-STEP.png`. Every wait is for something on the page, with
// a deadline; nothing sleeps to order events.

import { createRequire } from "node:module";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const URL = env("MANIFOLD_URL");
const ARTIFACTS = env("ARTIFACTS");
const require = createRequire(import.meta.url);
const { chromium } = require(join(env("TEST_DEPS"), "node_modules", "playwright-core"));

mkdirSync(ARTIFACTS, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), "manifold-console-chromium-"));
const WAIT = 20_000;

// Playwright passes `--user-data-dir` itself for a persistent context: the
// fresh profile made above.
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1500, height: 1100 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

const problems = []; // script errors and CSP violations on the page fail the run
// Each page has its own JavaScript memory, so its own token.
async function newPage() {
  const page = await browser.newPage();
  page.setDefaultTimeout(WAIT);
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // The browser logs every 4xx it fetched; a refused token (401) and a
    // refused reload (422) are answers this test asks for.
    if (m.type() === "error" && !/Failed to load resource: the server responded with a status of (401|422)/.test(m.text())) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  return page;
}

let current = null;
async function step(name, fn) {
  try {
    await fn();
    if (problems.length) throw new Error(problems.join("\n"));
    console.log(`ok - ${name}`);
  } catch (e) {
    console.log(`not ok - ${name}: ${e.message}`);
    if (current) await current.screenshot({ path: join(ARTIFACTS, `fail-${name}.png`), fullPage: true }).catch(() => {});
    await browser.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
    process.exit(1);
  }
}
const shot = (name) => current.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
const row = (name) => current.locator(`#backend-rows tr[data-backend="${name}"]`);
const cell = (name, i) => row(name).locator("td").nth(i);

const page = await newPage();
current = page;

await step("login-refuses-a-wrong-token", async () => {
  await page.goto(`${URL}/ui`);
  await page.locator("#login").waitFor({ state: "visible" });
  await page.fill("#token", "not-a-token");
  await page.click("#login-form button[type=submit]");
  await page.locator("#login-error", { hasText: "Token refused" }).waitFor();
  if (await page.locator("#app").isVisible()) throw new Error("the app is visible after a refused token");
  if (page.url().includes("not-a-token")) throw new Error("the token went into the URL");
  await shot("01-login-refused");
});

await step("login-accepts-the-admin-token", async () => {
  await page.fill("#token", env("ADMIN_TOKEN"));
  await page.click("#login-form button[type=submit]");
  await page.locator("#app").waitFor({ state: "visible" });
  await page.locator("#live.on").waitFor();
  await page.locator("#who", { hasText: "root-ops (admin)" }).waitFor();
  await row("fx").and(page.locator('[data-state="up"]')).waitFor();
  await row("payroll").and(page.locator('[data-state="up"]')).waitFor();
  if (page.url() !== `${URL}/ui`) throw new Error(`the URL changed: ${page.url()}`);
  const cookies = await browser.cookies();
  if (cookies.length) throw new Error(`cookies were set: ${JSON.stringify(cookies)}`);
});

let firstPid;
await step("a-killed-backend-goes-down-and-comes-back", async () => {
  firstPid = Number(await cell("fx", 3).innerText());
  if (!(firstPid > 1)) throw new Error(`no pid shown for fx: ${firstPid}`);
  process.kill(firstPid, "SIGKILL");
  await row("fx").and(page.locator('[data-state="down"]')).waitFor();
  await shot("02-backend-down");
  await row("fx").and(page.locator('[data-state="up"]')).waitFor();
  await page.waitForFunction(() => {
    const r = document.querySelector('#backend-rows tr[data-backend="fx"]');
    return r && r.querySelector("td.restarts").textContent === "1";
  });
  const pid = Number(await cell("fx", 3).innerText());
  if (pid === firstPid) throw new Error("the pid did not change after the restart");
  const lastError = await cell("fx", 6).innerText();
  if (!lastError.trim()) throw new Error("no last error shown after the backend went down");
});

await step("the-bus-shows-the-backend-events-by-priority", async () => {
  await page.locator("#bus-list li.prio-high", { hasText: "backend down" }).first().waitFor();
  await page.locator("#bus-list li.prio-normal", { hasText: "backend up" }).first().waitFor();
  await page.selectOption("#bus-min", "30");
  if (await page.locator("#bus-list li.prio-normal").count()) throw new Error("normal messages shown with `at least high`");
  await page.selectOption("#bus-min", "10");
});

await step("try-it-runs-a-tool", async () => {
  await page.fill("#tool-search", "fx__ec");
  await page.locator('#tool-list li[data-tool="fx__echo"]').click();
  if (await page.locator('#tool-list li[data-tool="fx__add"]').count()) throw new Error("search did not filter the list");
  await page.fill("#try-args", JSON.stringify({ message: "hello from the console" }));
  await page.click("#try-run");
  await page.locator("#try-result.ok", { hasText: "hello from the console" }).waitFor();
  await page.fill("#try-args", "{not json");
  await page.click("#try-run");
  await page.locator("#try-result.error", { hasText: "not valid JSON" }).waitFor();
  await page.fill("#try-args", JSON.stringify({ message: "hello from the console" }));
  await page.click("#try-run");
  await page.locator("#try-result.ok").waitFor();
  await shot("03-try-it");
});

await step("the-audit-entry-appears-live-and-filters", async () => {
  await page.locator("#audit-rows tr", { hasText: "tools/call fx__echo" }).first().waitFor();
  await page.fill("#audit-tool", "fx__echo");
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll("#audit-rows tr")];
    return rows.length > 0 && rows.every((r) => r.textContent.includes("fx__echo"));
  });
  // Live entries that do not match the filter stay out.
  await page.fill("#try-args", JSON.stringify({ message: "second call" }));
  await page.click("#try-run");
  await page.locator("#try-result.ok", { hasText: "second call" }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll("#audit-rows tr").length >= 3);
  await shot("04-audit");
  await page.fill("#audit-tool", "");
});

await step("latency-and-rate-are-shown-per-backend", async () => {
  await page.waitForFunction(() => {
    const r = document.querySelector('#backend-rows tr[data-backend="fx"]');
    return r && r.children[7].textContent !== "–" && Number(r.children[9].textContent) > 0;
  });
});

await step("a-job-starts-its-progress-moves-and-it-stops", async () => {
  await page.fill("#job-id", "slow-job");
  await page.fill("#job-tool", "fx__progress");
  await page.fill("#job-args", JSON.stringify({ steps: 60, delay_ms: 250 }));
  await page.click("#job-form button[type=submit]");
  const job = page.locator('#job-rows tr[data-job="slow-job"]');
  await job.and(page.locator('[data-state="running"]')).waitFor();
  const width = () => job.locator(".fill").evaluate((e) => parseFloat(e.style.width) || 0);
  await page.waitForFunction(() => {
    const f = document.querySelector('#job-rows tr[data-job="slow-job"] .fill');
    return f && parseFloat(f.style.width) > 0;
  });
  const first = await width();
  await page.waitForFunction((w) => {
    const f = document.querySelector('#job-rows tr[data-job="slow-job"] .fill');
    return f && parseFloat(f.style.width) > w;
  }, first);
  await shot("05-job-running");
  await job.locator("button[data-stop]").click();
  await job.and(page.locator('[data-state="stopped"]')).waitFor();
  if (await width() >= 100) throw new Error("the stopped job's bar is full");
  await shot("06-job-stopped");
});

await step("reload-shows-the-diff-it-applied", async () => {
  writeFileSync(env("CONFIG_FILE"), env("CONFIG_ADDED"));
  await page.click("#reload");
  await page.locator("#reload-body li.added", { hasText: "extra" }).waitFor();
  await row("extra").waitFor();
  await shot("07-reload-applied");
});

await step("reload-shows-the-errors-it-refused", async () => {
  writeFileSync(env("CONFIG_FILE"), env("CONFIG_BROKEN"));
  await page.click("#reload");
  await page.locator("#reload-body .error", { hasText: "Refused" }).waitFor();
  await page.locator("#reload-body ul.errors li", { hasText: "gateway.toml:" }).first().waitFor();
  await row("extra").waitFor(); // the running config stays
  await shot("08-reload-refused");
});

const userPage = await newPage();
current = userPage;
await step("a-non-admin-token-sees-only-its-backends", async () => {
  await userPage.goto(`${URL}/ui`);
  await userPage.fill("#token", env("USER_TOKEN"));
  await userPage.click("#login-form button[type=submit]");
  await userPage.locator("#live.on").waitFor();
  await userPage.locator('#backend-rows tr[data-backend="fx"]').waitFor();
  for (const hidden of ["payroll", "extra"]) {
    if (await userPage.locator(`#backend-rows tr[data-backend="${hidden}"]`).count()) {
      throw new Error(`backend ${hidden} is shown to a client that may not use it`);
    }
  }
  if (!(await userPage.locator("#reload").isDisabled())) throw new Error("reload is enabled for a non-admin");
  if (await userPage.locator('#tool-list li[data-tool^="payroll__"]').count()) throw new Error("payroll's tools are listed");
  if (await userPage.locator('#job-rows tr[data-job="slow-job"]').count()) throw new Error("another client's job is listed");
  await userPage.click("#logout");
  await userPage.locator("#login").waitFor({ state: "visible" });
  await userPage.locator("#live.off").waitFor();
  await userPage.screenshot({ path: join(ARTIFACTS, "09-logged-out.png"), fullPage: true });
});

await browser.close();
rmSync(profile, { recursive: true, force: true });
console.log("console browser test: all steps passed");
