// renga's dashboard: a page for each app over the same API the CLI uses.
// The token lives in this tab's sessionStorage and goes out as a Bearer
// header; everything shown is set as text (app names, config values and log
// lines are other people's input), never parsed as HTML.
'use strict';

const TOKEN_KEY = 'renga-token';
const MIB = 1024 * 1024;

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  // What the open page started and must stop when it is left.
  stops: [],
};

// ---- small helpers ------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function notice(text, isError) {
  const box = document.getElementById('notice');
  box.textContent = text;
  box.className = isError ? 'error' : '';
  box.hidden = !text;
}

function ago(iso) {
  if (!iso) return '';
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return 'just now';
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

// Only http(s) links are made from what the API returns.
function link(url, text) {
  return /^https?:\/\//.test(url || '') ? el('a', { href: url, target: '_blank', rel: 'noopener' }, text || url) : text || '';
}

class ApiError extends Error {}

async function api(method, path, body, headers) {
  const init = {
    method,
    headers: {
      Authorization: `Bearer ${state.token}`,
      Accept: 'application/vnd.heroku+json; version=3',
      ...(headers || {}),
    },
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  // A token refused after logging in (revoked, or the server's data reset)
  // ends the session; one refused while logging in is only that.
  if (response.status === 401 && sessionStorage.getItem(TOKEN_KEY)) {
    logOut('The token was refused: log in again.');
    throw new ApiError('unauthorized');
  }
  if (!response.ok) {
    throw new ApiError((data && data.message) || `${method} ${path}: ${response.status}`);
  }
  return data;
}

function appPath(app, rest) {
  return `/apps/${encodeURIComponent(app)}${rest || ''}`;
}

// Runs an action from a button: disables it meanwhile, shows what happened.
async function act(button, action, done) {
  button.disabled = true;
  try {
    await action();
    if (done) notice(done);
  } catch (error) {
    if (!(error instanceof ApiError && error.message === 'unauthorized')) notice(error.message, true);
  } finally {
    button.disabled = false;
  }
}

// ---- pages ----------------------------------------------------------------

function leavePage() {
  for (const stop of state.stops.splice(0)) stop();
}

function show(...children) {
  const main = document.getElementById('main');
  main.replaceChildren(...children.flat());
}

function logOut(reason) {
  leavePage();
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById('who').textContent = '';
  document.getElementById('logout').hidden = true;
  notice(reason || '', Boolean(reason));
  if (location.hash !== '#/login') location.hash = '#/login';
  else route();
}

async function route() {
  leavePage();
  if (!state.token) {
    showLogin();
    return;
  }
  const match = location.hash.match(/^#\/apps\/([^/]+)$/);
  try {
    if (match) await showApp(decodeURIComponent(match[1]));
    else await showApps();
  } catch (error) {
    if (!(error instanceof ApiError && error.message === 'unauthorized')) {
      show(el('section', {}, el('p', { class: 'error' }, error.message)));
    }
  }
}

function showLogin() {
  const input = el('input', { id: 'token', type: 'password', autocomplete: 'off', required: true });
  const error = el('p', { class: 'muted', id: 'login-error' });
  const form = el('form', {
    onsubmit: async (event) => {
      event.preventDefault();
      state.token = input.value.trim();
      try {
        const account = await api('GET', '/account');
        sessionStorage.setItem(TOKEN_KEY, state.token);
        greet(account);
        notice('');
        location.hash = '#/apps';
        if (location.hash === '#/apps') route();
      } catch {
        state.token = null;
        error.textContent = 'That token was refused.';
      }
    },
  },
  el('label', { for: 'token' }, 'API token'),
  input,
  el('button', { type: 'submit', id: 'login' }, 'Log in'),
  error,
  el('p', { class: 'muted' }, 'Your token is shown by ', el('code', {}, 'renga auth:token'), ' (or made with ', el('code', {}, 'renga auth:tokens:create'), '). It is kept in this tab only.'));
  show(el('section', { class: 'login' }, el('h1', {}, 'Log in to renga'), form));
  input.focus();
}

function greet(account) {
  document.getElementById('who').textContent = account.email || account.name || '';
  document.getElementById('logout').hidden = false;
}

function dynoSummary(app, dynos) {
  if (app.maintenance) return el('span', { class: 'state maintenance' }, 'maintenance');
  if (!dynos.length) return el('span', { class: 'state' }, 'no dynos');
  const counts = {};
  for (const dyno of dynos) counts[dyno.state] = (counts[dyno.state] || 0) + 1;
  return Object.entries(counts).map(([s, n]) => el('span', { class: `state ${s}` }, `${n} ${s}`));
}

async function showApps() {
  const apps = await api('GET', '/apps');
  const rows = apps.map((app) => {
    const stateCell = el('td', { class: 'app-state' }, '…');
    api('GET', appPath(app.name, '/dynos'))
      .then((dynos) => stateCell.replaceChildren(...[dynoSummary(app, dynos)].flat()))
      .catch(() => stateCell.replaceChildren('?'));
    return el('tr', { 'data-app': app.name },
      el('td', {}, el('a', { href: `#/apps/${encodeURIComponent(app.name)}` }, app.name)),
      stateCell,
      el('td', {}, link(app.web_url)),
      el('td', { class: 'muted' }, app.released_at ? `released ${ago(app.released_at)}` : 'never released'));
  });
  show(el('section', {},
    el('h1', {}, 'Apps'),
    apps.length
      ? el('table', { id: 'apps' },
        el('tr', {}, el('th', {}, 'Name'), el('th', {}, 'Dynos'), el('th', {}, 'Web'), el('th', {}, 'Released')),
        rows)
      : el('p', { class: 'muted' }, 'No apps yet: ', el('code', {}, 'renga apps:create NAME'), ', then ', el('code', {}, 'git push'), ' or ', el('code', {}, 'renga deploy'), '.')));
}

async function showApp(name) {
  const app = await api('GET', appPath(name));
  const headState = el('span', { id: 'app-state' });
  const sections = {
    metrics: el('section', { id: 'metrics' }),
    formation: el('section', { id: 'formation' }),
    releases: el('section', { id: 'releases' }),
    config: el('section', { id: 'config' }),
    addons: el('section', { id: 'addons' }),
    logs: el('section', { id: 'logs' }),
  };
  show(
    el('div', { class: 'app-head' },
      el('h1', {}, app.name),
      headState,
      link(app.web_url),
      el('span', { class: 'muted' }, `owner ${app.owner.email}`)),
    Object.values(sections));
  const page = { app: app.name, sections, headState, maintenance: app.maintenance };
  const refresh = () => Promise.all([
    loadFormation(page),
    loadReleases(page),
  ]);
  page.refresh = refresh;
  await Promise.all([refresh(), loadConfig(page), loadAddons(page), loadMetrics(page)]);
  startTail(page, 200);
  const every = setInterval(() => {
    loadMetrics(page).catch(() => {});
    loadFormation(page).catch(() => {});
  }, 10000);
  state.stops.push(() => clearInterval(every));
}

// ---- formation --------------------------------------------------------------

async function loadFormation(page) {
  const [formation, dynos] = await Promise.all([
    api('GET', appPath(page.app, '/formation')),
    api('GET', appPath(page.app, '/dynos')),
  ]);
  page.headState.replaceChildren(...[dynoSummary({ maintenance: page.maintenance }, dynos)].flat());
  const rows = formation.map((process) => {
    const quantity = el('input', { type: 'number', min: 0, value: process.quantity, 'data-type': process.type });
    const scale = el('button', {
      type: 'button',
      onclick: () => act(scale, async () => {
        await api('PATCH', appPath(page.app, `/formation/${encodeURIComponent(process.type)}`), {
          quantity: Number(quantity.value),
        });
        await loadFormation(page);
      }, `Scaled ${process.type} to ${quantity.value}.`),
    }, 'Scale');
    return el('tr', { 'data-type': process.type },
      el('td', {}, el('strong', {}, process.type)),
      el('td', { class: 'mono' }, process.command),
      el('td', {}, process.size),
      el('td', {}, quantity, ' ', scale));
  });
  const dynoRows = dynos.map((dyno) => el('tr', { 'data-dyno': dyno.name },
    el('td', { class: 'mono' }, dyno.name),
    el('td', {}, el('span', { class: `state ${dyno.state}` }, dyno.state)),
    el('td', {}, `v${dyno.release.version}`),
    el('td', { class: 'muted' }, ago(dyno.updated_at))));
  page.sections.formation.replaceChildren(
    el('h2', {}, 'Formation'),
    formation.length
      ? el('table', { id: 'formation-table' },
        el('tr', {}, el('th', {}, 'Type'), el('th', {}, 'Command'), el('th', {}, 'Size'), el('th', {}, 'Quantity')),
        rows)
      : el('p', { class: 'muted' }, 'Nothing to scale until the app is released.'),
    dynos.length
      ? el('table', { id: 'dynos' },
        el('tr', {}, el('th', {}, 'Dyno'), el('th', {}, 'State'), el('th', {}, 'Release'), el('th', {}, 'Since')),
        dynoRows)
      : el('p', { class: 'muted' }, 'No dynos running.'));
}

// ---- releases ----------------------------------------------------------------

async function loadReleases(page) {
  const releases = await api('GET', appPath(page.app, '/releases'), undefined, {
    Range: 'version ..; order=desc, max=15',
  });
  const rows = releases.map((release) => {
    let action = null;
    if (release.current) {
      action = el('span', { class: 'state up' }, 'current');
    } else if (release.eligible_for_rollback) {
      const button = el('button', { type: 'button', class: 'quiet', 'data-rollback': release.version }, `Roll back to v${release.version}`);
      let armed = false;
      button.addEventListener('click', () => {
        if (!armed) {
          armed = true;
          button.textContent = `Confirm roll back to v${release.version}`;
          button.className = 'danger';
          setTimeout(() => {
            armed = false;
            button.textContent = `Roll back to v${release.version}`;
            button.className = 'quiet';
          }, 5000);
          return;
        }
        act(button, async () => {
          await api('POST', appPath(page.app, '/releases'), { release: release.id });
          await Promise.all([page.refresh(), loadConfig(page)]);
        }, `Rolled back to v${release.version}.`);
      });
      action = button;
    }
    return el('tr', { 'data-version': release.version },
      el('td', {}, el('strong', {}, `v${release.version}`)),
      el('td', {}, release.description),
      el('td', { class: 'muted' }, release.user && release.user.email),
      el('td', { class: 'muted' }, ago(release.created_at)),
      el('td', {}, action));
  });
  page.sections.releases.replaceChildren(
    el('h2', {}, 'Releases'),
    releases.length
      ? el('table', { id: 'releases-table' }, rows)
      : el('p', { class: 'muted' }, 'No releases yet.'));
}

// ---- config vars ---------------------------------------------------------------

async function loadConfig(page) {
  const section = page.sections.config;
  if (!page.revealed) {
    const reveal = el('button', {
      type: 'button', class: 'quiet', id: 'reveal-config',
      onclick: () => { page.revealed = true; act(reveal, () => loadConfig(page)); },
    }, 'Reveal config vars');
    section.replaceChildren(el('h2', {}, 'Config vars'), reveal);
    return;
  }
  const vars = await api('GET', appPath(page.app, '/config-vars'));
  const change = async (button, patch, done) => act(button, async () => {
    await api('PATCH', appPath(page.app, '/config-vars'), patch);
    await Promise.all([loadConfig(page), page.refresh()]);
  }, done);
  const rows = Object.keys(vars).sort().map((key) => {
    const value = el('input', { type: 'text', value: vars[key], 'aria-label': key });
    const save = el('button', { type: 'button', class: 'quiet', onclick: () => change(save, { [key]: value.value }, `Set ${key}.`) }, 'Save');
    const remove = el('button', { type: 'button', class: 'danger', onclick: () => change(remove, { [key]: null }, `Removed ${key}.`) }, 'Remove');
    return el('tr', { 'data-key': key }, el('td', { class: 'mono' }, key), el('td', {}, value), el('td', {}, save, ' ', remove));
  });
  const key = el('input', { type: 'text', id: 'new-key', placeholder: 'KEY' });
  const value = el('input', { type: 'text', id: 'new-value', placeholder: 'value' });
  const add = el('button', {
    type: 'submit', id: 'add-config',
  }, 'Add');
  const form = el('form', {
    class: 'row-form',
    onsubmit: (event) => {
      event.preventDefault();
      const name = key.value.trim();
      if (name) change(add, { [name]: value.value }, `Set ${name}.`);
    },
  }, key, value, add);
  section.replaceChildren(
    el('h2', {}, 'Config vars'),
    rows.length ? el('table', { id: 'config-table' }, rows) : el('p', { class: 'muted' }, 'No config vars.'),
    form);
}

// ---- add-ons -------------------------------------------------------------------

async function loadAddons(page) {
  const addons = await api('GET', appPath(page.app, '/addons'));
  page.sections.addons.replaceChildren(
    el('h2', {}, 'Add-ons'),
    addons.length
      ? el('table', { id: 'addons-table' },
        el('tr', {}, el('th', {}, 'Add-on'), el('th', {}, 'Plan'), el('th', {}, 'Config vars'), el('th', {}, 'State')),
        addons.map((addon) => el('tr', { 'data-addon': addon.name },
          el('td', {}, el('strong', {}, addon.name)),
          el('td', {}, addon.plan.name),
          el('td', { class: 'mono' }, (addon.config_vars || []).join(', ')),
          el('td', {}, el('span', { class: 'state up' }, addon.state)))))
      : el('p', { class: 'muted' }, 'No add-ons: ', el('code', {}, `renga addons:create kv -a ${page.app}`), ' makes one.'));
}

// ---- the live log ----------------------------------------------------------------

const MAX_LOG_LINES = 1000;

async function startTail(page, lines) {
  const section = page.sections.logs;
  let log = section.querySelector('#log');
  if (!log) {
    log = el('pre', { id: 'log', 'aria-live': 'off' });
    section.replaceChildren(el('h2', {}, 'Live log'), log);
  }
  let session;
  try {
    session = await api('POST', appPath(page.app, '/log-sessions'), { tail: true, lines });
  } catch (error) {
    log.append(`(renga: the log cannot be followed: ${error.message})\n`);
    return;
  }
  // The session's own URL is its credential; it is read from this origin
  // whatever address the server calls itself.
  const url = new URL(session.logplex_url, location.href);
  const source = new EventSource(url.pathname);
  let retry = null;
  const stop = () => {
    source.close();
    clearTimeout(retry);
  };
  state.stops.push(stop);
  source.onmessage = (event) => {
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(`${event.data}\n`);
    while (log.childNodes.length > MAX_LOG_LINES) log.firstChild.remove();
    if (atEnd) log.scrollTop = log.scrollHeight;
  };
  source.onerror = () => {
    // A new session, without the lines already shown.
    source.close();
    log.append('(renga: the log stream was interrupted; reconnecting)\n');
    retry = setTimeout(() => {
      if (state.stops.includes(stop)) {
        state.stops.splice(state.stops.indexOf(stop), 1);
        startTail(page, 0);
      }
    }, 3000);
  };
}

// ---- graphs --------------------------------------------------------------------

async function loadMetrics(page) {
  const data = await api('GET', appPath(page.app, '/metrics'));
  const every = data.interval_seconds;
  const slots = Math.round((data.to - data.from) / every);
  const slot = (time) => Math.min(slots - 1, Math.max(0, Math.floor((time - data.from) / every)));
  // Periods without a sample had no requests and held no memory.
  const series = (value, gapIsZero) => {
    const points = new Array(slots).fill(gapIsZero ? 0 : null);
    for (const sample of data.samples) {
      const v = value(sample);
      if (v !== null && v !== undefined) points[slot(sample.time)] = v;
    }
    return points;
  };
  const charts = [
    chart('requests', 'Requests per second', [
      { name: 'req/s', points: series((s) => s.requests_per_second, true) },
    ]),
    chart('latency', 'Response time (ms)', [
      { name: 'p50', points: series((s) => s.latency_ms.p50, false) },
      { name: 'p95', points: series((s) => s.latency_ms.p95, false) },
      { name: 'p99', points: series((s) => s.latency_ms.p99, false) },
    ]),
    chart('errors', 'Errors (5xx per second)', [
      { name: '5xx/s', points: series((s) => s.errors / every, true) },
    ]),
    chart('memory', 'Memory (MB)', [
      { name: 'most held at once', points: series((s) => s.memory_bytes / MIB, true) },
    ]),
  ];
  page.sections.metrics.replaceChildren(
    el('h2', {}, 'The last hour'),
    el('div', { class: 'charts' }, charts));
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function label(value) {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1).replace(/\.0$/, '');
  return String(Number(value.toPrecision(2)));
}

function chart(id, title, lines) {
  const width = 520;
  const height = 150;
  const left = 40;
  const top = 8;
  const bottom = 20;
  const plotWidth = width - left - 8;
  const plotHeight = height - top - bottom;
  const highest = Math.max(0, ...lines.flatMap((line) => line.points.filter((p) => p !== null)));
  const max = niceMax(highest);
  const slots = lines[0].points.length;
  const x = (i) => left + (plotWidth * i) / Math.max(1, slots - 1);
  const y = (v) => top + plotHeight - (plotHeight * v) / max;
  const drawing = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
  for (const fraction of [0, 0.5, 1]) {
    const value = max * fraction;
    drawing.append(
      svg('line', { class: 'axis', x1: left, x2: width - 8, y1: y(value), y2: y(value) }),
      svg('text', { x: left - 4, y: y(value) + 3, 'text-anchor': 'end' }, label(value)));
  }
  for (const [i, text] of [[0, '60 min ago'], [Math.floor(slots / 2), '30 min ago'], [slots - 1, 'now']]) {
    const anchor = i === 0 ? 'start' : i === slots - 1 ? 'end' : 'middle';
    drawing.append(svg('text', { x: x(i), y: height - 5, 'text-anchor': anchor }, text));
  }
  lines.forEach((line, n) => {
    // A gap (no figure for the period) breaks the line; a figure alone
    // between gaps is a dot.
    let path = '';
    line.points.forEach((value, i) => {
      if (value === null) return;
      const before = i > 0 && line.points[i - 1] !== null;
      const after = i + 1 < slots && line.points[i + 1] !== null;
      if (!before && !after) {
        drawing.append(svg('circle', { class: `dot s${n}`, cx: x(i), cy: y(value), r: 2.5 }));
        return;
      }
      path += `${before ? 'L' : 'M'}${x(i).toFixed(1)},${y(value).toFixed(1)}`;
    });
    if (path) drawing.append(svg('path', { class: `series s${n}`, d: path }));
  });
  return el('figure', { class: 'chart', id: `chart-${id}`, 'data-max': highest },
    el('figcaption', {}, title),
    drawing,
    el('div', { class: 'legend' }, lines.map((line, n) => el('span', { class: `s${n}` }, line.name))));
}

// ---- start ---------------------------------------------------------------------

document.getElementById('logout').addEventListener('click', () => logOut());
window.addEventListener('hashchange', route);
if (state.token) {
  api('GET', '/account').then(greet).catch(() => {});
}
route();
