// The GUI of kuma-cp: reads the HTTP API of the control plane that served it (same origin) and
// redraws itself every few seconds, backing off while the API fails. Read-only. Nothing is
// fetched from anywhere else (the Content-Security-Policy forbids it) and no HTML is built from
// API strings: every value goes in as text.
'use strict';
(() => {
  const TYPES = JSON.parse(document.getElementById('kuma-types').textContent);
  const TOKEN = 'kuma-gui-token';
  const EVERY = 5000;
  const AT_MOST = 60000;
  const $ = (id) => document.getElementById(id);
  let wait = EVERY;
  let timer = 0;
  let serverInfo = null;
  // Matched policies per dataplane, kept while neither it nor its mesh's policies change.
  const matched = new Map();

  class AuthError extends Error {}

  // An operator may open the page as /gui/#token=...: the token moves into this tab's storage
  // and out of the address bar.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get('token')) {
    sessionStorage.setItem(TOKEN, fragment.get('token'));
    history.replaceState(null, '', location.pathname + location.search);
  }

  async function api(path) {
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN);
    if (token) headers.Authorization = 'Bearer ' + token;
    const reply = await fetch(path, { headers, cache: 'no-store', credentials: 'omit' });
    if (reply.ok) return reply.json();
    let details = '';
    try { details = (await reply.json()).details || ''; } catch (_) { /* not Kuma's error body */ }
    if (reply.status === 401 || reply.status === 403) throw new AuthError(details || 'HTTP ' + reply.status);
    const error = new Error(path + ': HTTP ' + reply.status + (details ? ' ' + details : ''));
    error.status = reply.status;
    throw error;
  }

  // This peer's copy (consistency=stale): the page keeps working while the cluster has no
  // leader, which is when an operator most needs to look at it.
  const STALE = 'consistency=stale';

  // Every page of a list; `next` is an absolute URL of the same API.
  async function all(path) {
    let items = [];
    let url = path + '?size=1000&' + STALE;
    for (let pages = 0; url && pages < 1000; pages++) {
      const page = await api(url);
      items = items.concat(page.items || []);
      url = page.next ? (({ pathname, search }) => pathname + search)(new URL(page.next, location.href)) : null;
    }
    return items;
  }

  function h(tag, props, ...children) {
    const element = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (key === 'class') element.className = value;
      else element.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      element.append(child instanceof Node ? child : document.createTextNode(String(child ?? '')));
    }
    return element;
  }

  function table(header, rows, empty) {
    if (!rows.length) return h('p', { class: 'none' }, empty);
    return h('table', null,
      h('thead', null, h('tr', null, header.map((title) => h('th', null, title)))),
      h('tbody', null, rows));
  }

  // Like kumactl's ages: the largest whole unit.
  function ago(time) {
    if (!time) return 'never';
    const s = Math.max(0, Math.floor((Date.now() - Date.parse(time)) / 1000));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm';
    if (s < 86400) return Math.floor(s / 3600) + 'h';
    if (s < 365 * 86400) return Math.floor(s / 86400) + 'd';
    return Math.floor(s / (365 * 86400)) + 'y';
  }

  const yesNo = (yes) => h('span', { class: yes ? 'yes' : 'no' }, yes ? 'yes' : 'no');

  function tagsOf(dataplane) {
    const tags = {};
    const networking = (dataplane && dataplane.networking) || {};
    for (const inbound of networking.inbound || []) {
      for (const [key, value] of Object.entries(inbound.tags || {})) {
        tags[key] = tags[key] || [];
        if (!tags[key].includes(value)) tags[key].push(value);
      }
    }
    const gateway = networking.gateway && networking.gateway.tags;
    for (const [key, value] of Object.entries(gateway || {})) tags[key] = [value];
    return Object.keys(tags).sort().map((key) => key + '=' + tags[key].join(',')).join(' ');
  }

  // The open stream of a dataplane, if any: the latest subscription not disconnected.
  function openSubscription(insight) {
    const open = ((insight && insight.subscriptions) || []).filter((s) => s.connectTime && !s.disconnectTime);
    open.sort((a, b) => Date.parse(b.connectTime) - Date.parse(a.connectTime));
    return open[0] || null;
  }

  function lastConnected(insight) {
    const times = ((insight && insight.subscriptions) || []).map((s) => s.connectTime).filter(Boolean);
    times.sort();
    return times.length ? times[times.length - 1] : null;
  }

  // The peers, in one shape for both stores: [{id, instance, role, term, applied, healthy, ...}].
  function readPeers(status) {
    if (!status) return null;
    if (status.store === 'postgres') {
      return {
        store: 'postgres',
        this: status.thisInstance,
        rows: (status.instances || []).map((i) => ({
          id: i.id, instance: i.id, leader: !!i.leader, healthy: !!i.alive,
          api: i.apiUrl, xds: i.xdsAddress, lastSeen: i.lastSeen,
        })),
      };
    }
    return {
      store: 'raft',
      this: status.this,
      leader: status.leader,
      tolerance: status.failureTolerance,
      rows: (status.members || []).map((m) => ({
        id: m.id,
        instance: m.serves ? m.serves.instanceId : '',
        role: m.status ? m.status.role : 'unreachable',
        term: m.status ? m.status.term : '-',
        applied: m.status && m.status.lastAppliedIndex !== null && m.status.lastAppliedIndex !== undefined ? m.status.lastAppliedIndex : '-',
        healthy: !!m.healthy,
        leader: status.leader === m.id,
        api: m.serves ? m.serves.apiUrl : '-',
        xds: m.serves ? m.serves.xdsAddress : '-',
        raft: m.raftAddress,
      })),
    };
  }

  function peerName(peers, instance) {
    if (!instance) return '-';
    const peer = peers && peers.rows.find((p) => p.instance === instance);
    if (!peer) return instance;
    return peers.store === 'raft' ? 'peer ' + peer.id + ' (' + instance + ')' : instance;
  }

  function drawPeers(peers) {
    if (!peers) {
      $('peers').replaceChildren(h('p', { class: 'none' }, 'A single control plane: it keeps its state on its own, with no peers.'));
      return;
    }
    if (peers.store === 'postgres') {
      $('peers').replaceChildren(table(['Instance', 'Leader', 'Alive', 'API', 'xDS', 'Last seen'],
        peers.rows.map((p) => h('tr', { 'data-peer': p.id, 'data-leader': p.leader, 'data-healthy': p.healthy },
          h('td', null, p.id + (p.id === peers.this ? ' (this one)' : '')), h('td', null, p.leader ? 'yes' : 'no'),
          h('td', null, yesNo(p.healthy)), h('td', null, p.api), h('td', null, p.xds), h('td', null, ago(p.lastSeen) + ' ago'))),
        'No instances registered.'));
      return;
    }
    // A follower cut off from the others still names the leader it last heard from.
    const leader = peers.rows.find((p) => p.id === peers.leader && p.healthy);
    const summary = !leader
      ? h('p', { id: 'cluster', class: 'no' }, 'No leader reachable: writes wait until a majority of peers is back.')
      : h('p', { id: 'cluster' }, 'Leader: peer ' + peers.leader + '. Peers that may fail with a majority left: ' + peers.tolerance + '.');
    $('peers').replaceChildren(summary, table(['Peer', 'Role', 'Term', 'Applied index', 'Healthy', 'Raft', 'xDS', 'API'],
      peers.rows.map((p) => h('tr', { 'data-peer': p.id, 'data-role': p.role, 'data-healthy': p.healthy },
        h('td', null, p.id + (p.id === peers.this ? ' (this one)' : '')), h('td', null, p.role),
        h('td', null, p.term), h('td', null, p.applied), h('td', null, yesNo(p.healthy)),
        h('td', null, p.raft), h('td', null, p.xds), h('td', null, p.api))),
      'No members.'));
  }

  // "Kind name" for every policy the dataplane's inbounds, outbounds and itself matched.
  function policyNames(selection) {
    const names = new Set();
    const add = (policies) => {
      for (const [kind, chosen] of Object.entries(policies || {})) names.add(kind + ' ' + chosen.name);
    };
    add(selection.policies);
    for (const side of [selection.inbounds || [], selection.outbounds || []]) side.forEach((i) => add(i.policies));
    return [...names].sort();
  }

  async function matchedPolicies(overview, policies) {
    const mesh = overview.mesh;
    const key = overview.modificationTime + '|' + policies
      .filter((p) => p.mesh === mesh).map((p) => p.type + '/' + p.name + '@' + p.modificationTime).join(',');
    const id = mesh + '/' + overview.name;
    const known = matched.get(id);
    if (known && known.key === key) return known.names;
    const path = '/meshes/' + encodeURIComponent(mesh) + '/dataplanes/' + encodeURIComponent(overview.name) + '/policies?' + STALE;
    let names;
    try {
      names = policyNames(await api(path));
    } catch (e) {
      // Deleted since the list was read: the next refresh drops it.
      if (e.status === 404) return [];
      throw e;
    }
    matched.set(id, { key, names });
    return names;
  }

  // fn over every item, at most `limit` at a time, results in order: a mesh of many
  // dataplanes is not asked for all their policies at once.
  async function mapLimited(items, limit, fn) {
    const results = new Array(items.length);
    let next = 0;
    const worker = async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
    return results;
  }

  async function refresh() {
    if (!serverInfo) {
      serverInfo = await api('/');
      $('cp').textContent = serverInfo.hostname + ' · ' + serverInfo.tagline + ' ' + serverInfo.version;
    }
    const [meshes, overviews, status, policyLists] = await Promise.all([
      all('/meshes'),
      all('/dataplanes+insights'),
      api('/status/raft').catch((e) => { if (e.status === 404) return null; throw e; }),
      Promise.all(TYPES.map((t) => all('/' + t.path))),
    ]);
    const policies = policyLists.flat();
    const peers = readPeers(status);
    const names = await mapLimited(overviews, 6, (o) => matchedPolicies(o, policies));
    const present = new Set(overviews.map((o) => o.mesh + '/' + o.name));
    for (const id of matched.keys()) if (!present.has(id)) matched.delete(id);

    drawPeers(peers);
    $('meshes').replaceChildren(table(['Mesh', 'Dataplanes online', ...TYPES.map((t) => t.title)],
      meshes.map((m) => {
        const own = overviews.filter((o) => o.mesh === m.name);
        const online = own.filter((o) => openSubscription(o.dataplaneInsight)).length;
        return h('tr', { 'data-mesh': m.name }, h('td', null, m.name), h('td', null, online + '/' + own.length),
          TYPES.map((t) => h('td', null, policies.filter((p) => p.mesh === m.name && p.type === t.name).length)));
      }), 'No meshes.'));
    $('dataplanes').replaceChildren(table(['Mesh', 'Name', 'Tags', 'Status', 'Control plane', 'Last connected', 'Matched policies'],
      overviews.map((o, i) => {
        const open = openSubscription(o.dataplaneInsight);
        const state = open ? 'Online' : 'Offline';
        return h('tr', { 'data-dataplane': o.mesh + '/' + o.name, 'data-status': state, 'data-peer-instance': open ? open.controlPlaneInstanceId : '' },
          h('td', null, o.mesh), h('td', null, o.name), h('td', null, tagsOf(o.dataplane)),
          h('td', null, h('span', { class: state.toLowerCase() }, state)),
          h('td', null, open ? peerName(peers, open.controlPlaneInstanceId) : '-'),
          h('td', null, ago(lastConnected(o.dataplaneInsight))),
          h('td', null, names[i].length ? names[i].join(', ') : 'none'));
      }), 'No dataplanes.'));
    $('policies').replaceChildren(table(['Mesh', 'Type', 'Name', 'Modified'],
      policies.map((p) => h('tr', { 'data-policy': p.mesh + '/' + p.type + '/' + p.name },
        h('td', null, p.mesh), h('td', null, p.type), h('td', null, p.name), h('td', null, ago(p.modificationTime) + ' ago'))),
      'No policies.'));
  }

  function showLogin(why) {
    $('login').hidden = false;
    $('login-why').textContent = 'The API needs a user token: ' + why;
    document.body.dataset.state = 'token';
  }

  async function tick() {
    clearTimeout(timer);
    // A tab nobody looks at asks nothing; it catches up when shown again.
    if (document.hidden) return;
    try {
      await refresh();
      wait = EVERY;
      $('login').hidden = true;
      $('state').className = '';
      $('state').textContent = 'updated ' + new Date().toLocaleTimeString();
      if (!document.body.dataset.firstData) {
        // Milliseconds from navigation to the DOM holding the data, and to the first paint.
        const paint = performance.getEntriesByName('first-contentful-paint')[0];
        document.body.dataset.firstData = Math.round(performance.now());
        if (paint) document.body.dataset.firstPaint = Math.round(paint.startTime);
      }
      document.body.dataset.state = 'ready';
    } catch (e) {
      wait = Math.min(wait * 2, AT_MOST);
      $('state').className = 'error';
      if (e instanceof AuthError) {
        showLogin(e.message);
        $('state').textContent = 'waiting for a token';
      } else {
        $('state').textContent = String(e.message || e) + ' — retrying in ' + Math.round(wait / 1000) + 's';
        document.body.dataset.state = 'error';
      }
    }
    $('logout').hidden = !sessionStorage.getItem(TOKEN);
    timer = setTimeout(tick, wait);
  }

  $('login').addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN, $('token').value.trim());
    $('token').value = '';
    wait = EVERY;
    tick();
  });
  $('logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN);
    matched.clear();
    tick();
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) tick();
  });
  tick();
})();
