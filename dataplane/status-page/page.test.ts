// The status page as an operator sees it: a real agent (supervising BIRD, peering with a router's
// BIRD, XDP filter attached) in a namespace, the page opened in headless Debian chromium in that
// namespace, live values read from the DOM while the page polls, and a drain seen without a reload.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTopology, waitFor } from '../../testhosts/index.js';
import { startAgent, freePort, runCli } from '../testing.js';
import { waitForRoute } from '../../bgp/testing.js';
import { routerAndPop, popAgentYaml, ANYCAST_PREFIX, DENIED_SOURCE } from '../../agent/testing.js';
import { launchChromium } from './testing.js';

test('with an admin token: GET / shows no data without it, and the browser asks for it', { timeout: 60_000 }, async () => {
  const token = 'page-token-0123456789abcdef';
  const agent = await startAgent(`admin:\n  listen: 127.0.0.1:${await freePort()}\n  apiToken: ${token}\nagent:\n  name: pop-token\n`);
  try {
    const anon = await fetch(`${agent.adminUrl}/`);
    assert.equal(anon.status, 401);
    const form = await anon.text();
    assert.match(form, /<form id="login">/);
    const main = /<main id="app">([\s\S]*?)<\/main>/.exec(form)?.[1] ?? '';
    assert.match(main, /Admin token needed/);
    assert.doesNotMatch(form, /pop-token/, 'not even the PoP name without the token');
    assert.doesNotMatch(main, /<section id="health">/, 'no data without the token');
    const json = await fetch(`${agent.adminUrl}/v1/status/page`);
    assert.equal(json.status, 401);
    await json.body?.cancel();
    const ok = await fetch(`${agent.adminUrl}/`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200);
    assert.match(ok.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(ok.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    const html = await ok.text();
    assert.match(html, /<section id="health">/);
    assert.doesNotMatch(html, /<script[^>]+src=|<link[^>]+href=/, 'nothing is fetched from elsewhere');

    // In a browser: a wrong token leaves it asking, the right one shows the live page.
    const browser = await launchChromium();
    try {
      await browser.open(`${agent.adminUrl}/`);
      const submit = (t: string) =>
        browser.evaluate(`document.getElementById('token').value = ${JSON.stringify(t)}; document.getElementById('login').requestSubmit(); true`);
      await submit('wrong-token-wrong-token');
      await waitFor('the page to refuse a wrong token', async () =>
        /admin token needed/.test(await browser.evaluate<string>(`document.getElementById('live').innerText`)) ? true : undefined,
      );
      await submit(token);
      const header = await waitFor('the page to show the PoP', async () => {
        const h = await browser.evaluate<string>(`document.querySelector('header')?.innerText ?? ''`);
        return /pop-token/.test(h) ? h : undefined;
      });
      assert.match(header, /health:/);
    } finally {
      await browser.close();
    }
  } finally {
    await agent.stop();
  }
});

test('status page in headless chromium: live BGP, health, XDP and children; a drain shows without reload', { timeout: 150_000 }, async () => {
  await withTopology(async (topo) => {
    const t = await routerAndPop(topo);
    const { router, pop } = t;
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/`;
    const yaml = popAgentYaml(t, { listen: `127.0.0.1:${port}` });
    const agent = await startAgent(yaml, { netns: pop.name });
    topo.onDestroy(async () => void (await agent.stop('SIGKILL')));
    const learned = await waitForRoute(t.bird.control, ANYCAST_PREFIX, (r) => r.present, 30_000);
    assert.ok(learned.ok, `router never learned ${ANYCAST_PREFIX}:\n${agent.logLines.slice(-20).join('\n')}`);

    // Traffic for the filter chart: a denied source and a plain one, bounded in count.
    for (const src of [DENIED_SOURCE, '10.0.1.1']) topo.track(router.spawn(['ping', '-q', '-c', '200', '-i', '0.1', '-I', src, '10.0.1.2']));

    const browser = await launchChromium({ wrap: ['ip', 'netns', 'exec', pop.name], width: 1280, height: 1000 });
    topo.onDestroy(() => browser.close());
    await browser.open(url);
    const text = (sel: string) => browser.evaluate<string>(`document.querySelector(${JSON.stringify(sel)})?.innerText ?? ''`);
    const states = (sel: string) =>
      browser.evaluate<string[]>(`[...document.querySelectorAll(${JSON.stringify(`${sel} [data-state]`)})].map((e) => e.dataset.state)`);

    // First paint (server-rendered).
    assert.match(await text('header'), /pop-test-1/);
    assert.match(await text('#health'), /external\.svc/);
    assert.match(await text('#bgp'), /198\.51\.100\.1\/32/);

    // Live values arrive through the script's polling: the prefix announced, the session up,
    // BIRD running, denied packets counted by reason.
    const live = await waitFor(
      'the page to show the prefix announced and denylist drops',
      async () => {
        const bgp = await text('#bgp');
        const xdp = await text('#xdp');
        const drop = Number((await text('#xdp-drop')).replace(/,/g, ''));
        return /announced/.test(bgp) && /Established/.test(bgp) && /dropped: denylist/.test(xdp) && drop > 0 ? { bgp, xdp } : undefined;
      },
      30_000,
      500,
    );
    assert.match(live.bgp, /up4/);
    assert.deepEqual(await states('header'), ['up']);
    const children = await text('#children');
    assert.match(children, /bird\s+running/);
    assert.match(await browser.evaluate<string>(`document.getElementById('live').innerText`), /^live · every/);
    const before = await text('#updated');

    // Drain through the API; the open page (no reload) turns the prefix and the health to draining.
    await pop.exec(['curl', '-sf', '-X', 'POST', `${url}v1/drain`]);
    const drained = await waitFor(
      'the page to show draining',
      async () => {
        const prefixStates = await states('#bgp table:first-of-type');
        const header = await states('header');
        return prefixStates.includes('draining') && header[0] === 'draining' ? { prefixStates, header } : undefined;
      },
      15_000,
      300,
    );
    assert.deepEqual(drained.header, ['draining']);
    assert.match(await text('#bgp'), /agent draining/, 'the page says why the prefix changed');
    assert.notEqual(await text('#updated'), before, 'the page re-rendered');

    // The same state in the terminal: `cbr status` in the PoP namespace.
    const cli = await runCli(['status', '--admin', url], { netns: pop.name });
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /health: DRAINING/);
    assert.match(cli.stdout, /^198\.51\.100\.1\/32 +draining /m);
    assert.match(cli.stdout, /^bird +running +\d+ +0$/m);

    const png = await browser.screenshot();
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    assert.ok(png.length > 20_000, `screenshot of ${png.length} bytes looks empty`);
    const out = join(t.work, 'status-page.png');
    writeFileSync(out, png);
    // CBR_SCREENSHOT=docs/status-page.png keeps the picture (the repository's copy is made this way).
    if (process.env.CBR_SCREENSHOT) copyFileSync(out, process.env.CBR_SCREENSHOT);
  });
});
