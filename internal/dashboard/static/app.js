// presenced admin dashboard. Plain JavaScript, no dependencies, no build.
//
// The page is an API client like any other: login/, admin/users/ for the
// list, the SSE stream admin/events/ (opened with a single-use ticket) for
// live changes, heartbeat/ while open, refresh/ when the access token
// expires, logout/ on the way out. Tokens are kept in this tab's
// sessionStorage only. User data is always inserted with textContent, never
// as HTML.
'use strict';

(function () {
  const API = '/api/users/';
  const HEARTBEAT_MS = Math.max(1000, Number(document.querySelector('meta[name="presenced-heartbeat-ms"]').content) || 40000);
  const PAGE_SIZE = 50;
  const STORAGE_KEY = 'presenced.dashboard';
  const STATUS_RANK = { online: 0, away: 1, offline: 2 };
  const STATUS_LABEL = { online: 'Online', away: 'Away', offline: 'Offline' };

  const $ = (id) => document.getElementById(id);
  const el = (tag, props, ...children) => {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role' || k === 'title' || k === 'datetime' || k === 'type' || k === 'for') e.setAttribute(k, v);
        else e[k] = v;
      }
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  };

  // ---------------------------------------------------------------- state

  const state = {
    access: null,
    refresh: null,
    me: null,
    users: new Map(), // id -> user, the rows loaded
    rows: new Map(), // id -> <tr>
    next: null, // next page URL
    filter: { search: '', status: '' },
    listGeneration: 0,
    present: new Map(), // id -> online|away, for the counters
    total: null,
    lastEvent: new Map(), // id -> {data, received}: guards against stale reads
    es: null,
    lastEventId: null,
    reconnectDelay: 1000,
    reconnectTimer: null,
    timers: [],
    refreshing: null, // the in-flight token refresh
    pendingRefresh: new Set(),
    refreshTimer: null,
    drawerUserId: null,
    drawerOpener: null,
  };

  class ApiError extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // ---------------------------------------------------------------- tokens

  function saveTokens() {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ access: state.access, refresh: state.refresh }));
  }

  function loadTokens() {
    try {
      const t = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || 'null');
      if (t && t.access && t.refresh) {
        state.access = t.access;
        state.refresh = t.refresh;
        return true;
      }
    } catch (e) { /* a corrupt entry is no session */ }
    return false;
  }

  function clearTokens() {
    state.access = null;
    state.refresh = null;
    sessionStorage.removeItem(STORAGE_KEY);
  }

  // refreshTokens rotates the refresh token once, however many requests
  // found the access token expired at the same time.
  function refreshTokens() {
    if (!state.refreshing) {
      state.refreshing = (async () => {
        try {
          const res = await fetch(API + 'refresh/', {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ refresh: state.refresh }),
          });
          if (!res.ok) return false;
          const t = await res.json();
          state.access = t.access;
          state.refresh = t.refresh;
          saveTokens();
          return true;
        } catch (e) {
          return false;
        } finally {
          setTimeout(() => { state.refreshing = null; }, 0);
        }
      })();
    }
    return state.refreshing;
  }

  // api calls the API with the access token; on a 401 it rotates the
  // refresh token once and retries, and when that fails the session is over.
  async function api(method, path, body, retried) {
    const url = path.startsWith('/') ? path : API + path;
    const headers = {};
    if (state.access) headers.Authorization = 'Bearer ' + state.access;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ApiError(0, 'Cannot reach presenced');
    }
    let data = null;
    try { data = await res.json(); } catch (e) { /* not JSON */ }
    if (res.status === 401 && state.refresh && !retried) {
      if (await refreshTokens()) return api(method, path, body, true);
      sessionEnded('Your session has ended. Please sign in again.');
    }
    if (!res.ok) {
      const msg = (data && (data.error || data.detail || data.message)) || res.statusText || 'Request failed';
      throw new ApiError(res.status, msg, data && data.code);
    }
    return data;
  }

  // ---------------------------------------------------------------- login

  function showLogin(message, info) {
    stopApp();
    $('app-view').hidden = true;
    $('session-bar').hidden = true;
    $('login-view').hidden = false;
    const m = $('login-message');
    m.hidden = !message;
    m.textContent = message || '';
    m.classList.toggle('info', !!info);
    $('password').value = '';
    $('username').focus();
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const username = $('username').value.trim();
    const password = $('password').value;
    if (!username || !password) {
      showLoginError('Enter your username and password.');
      return;
    }
    const submit = $('login-submit');
    submit.disabled = true;
    try {
      const res = await fetch(API + 'login/', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username, password }),
      });
      const data = await res.json().catch(() => null);
      if (res.status === 401) return showLoginError('Invalid username or password.');
      if (!res.ok) return showLoginError((data && data.error) || 'Sign-in failed (' + res.status + ').');
      if (data.user.role !== 'admin' && data.user.role !== 'moderator') {
        // End the session this login just opened: it has no use here.
        await fetch(API + 'logout/', {
          method: 'POST',
          headers: { Authorization: 'Bearer ' + data.tokens.access, 'Content-Type': 'application/json' },
          body: JSON.stringify({ refresh: data.tokens.refresh }),
        }).catch(() => {});
        return showLoginError('This dashboard is for admins and moderators. Your account has the role "' + data.user.role + '".');
      }
      state.access = data.tokens.access;
      state.refresh = data.tokens.refresh;
      saveTokens();
      $('password').value = '';
      startApp(data.user);
    } catch (e) {
      showLoginError('Cannot reach presenced. Check your connection and try again.');
    } finally {
      submit.disabled = false;
    }
  }

  function showLoginError(msg) {
    $('password').value = '';
    const m = $('login-message');
    m.textContent = msg;
    m.classList.remove('info');
    m.hidden = false;
    $('password').focus();
  }

  function sessionEnded(message) {
    clearTokens();
    showLogin(message);
  }

  async function logout() {
    const access = state.access;
    const refresh = state.refresh;
    stopApp();
    clearTokens();
    try {
      await fetch(API + 'logout/', {
        method: 'POST',
        headers: Object.assign({ 'Content-Type': 'application/json' }, access ? { Authorization: 'Bearer ' + access } : {}),
        body: JSON.stringify({ refresh }),
      });
    } catch (e) { /* the tokens are gone from this tab either way */ }
    showLogin('You are logged out.', true);
  }

  // ---------------------------------------------------------------- app

  async function startApp(me) {
    state.me = me;
    $('login-view').hidden = true;
    $('app-view').hidden = false;
    $('session-bar').hidden = false;
    $('me').textContent = 'Signed in as ' + me.username + ' (' + me.role + ')';
    $('readonly-note').hidden = me.role === 'admin';
    $('main').focus();
    heartbeat();
    state.timers.push(setInterval(heartbeat, HEARTBEAT_MS));
    state.timers.push(setInterval(refreshTimes, 15000));
    state.timers.push(setInterval(loadCounts, 30000));
    // The stream first, so that nothing that happens while the list loads
    // is missed; the list is read after the stream is open.
    await connectEvents();
    await Promise.all([loadUsers(true), loadCounts()]);
  }

  function stopApp() {
    for (const t of state.timers) clearInterval(t);
    state.timers = [];
    clearTimeout(state.reconnectTimer);
    clearTimeout(state.refreshTimer);
    if (state.es) state.es.close();
    state.es = null;
    state.lastEventId = null;
    state.users.clear();
    state.rows.clear();
    state.present.clear();
    state.lastEvent.clear();
    state.pendingRefresh.clear();
    state.total = null;
    state.next = null;
    state.me = null;
    closeDrawer();
    $('users').tBodies[0].replaceChildren();
  }

  // heartbeat keeps the page's own session live; a hidden tab reports no
  // activity, so an admin who walks away shows as away.
  async function heartbeat() {
    if (!state.access) return;
    try {
      await api('POST', 'heartbeat/', { active: !document.hidden });
    } catch (e) { /* the next one retries; a dead session ends in api() */ }
  }

  // ---------------------------------------------------------------- events

  function setConn(s, text) {
    const c = $('conn');
    c.dataset.state = s;
    c.textContent = text;
  }

  // connectEvents opens the stream with a fresh ticket, resuming after the
  // last event seen. It resolves once the stream is open (or failed).
  function connectEvents() {
    clearTimeout(state.reconnectTimer);
    if (state.es) state.es.close();
    state.es = null;
    return new Promise(async (resolve) => {
      let ticket;
      try {
        ticket = (await api('POST', 'admin/events/ticket/')).ticket;
      } catch (e) {
        if (state.access) scheduleReconnect();
        return resolve();
      }
      if (!state.access) return resolve();
      const q = new URLSearchParams({ ticket });
      if (state.lastEventId) q.set('last_event_id', state.lastEventId);
      const es = new EventSource(API + 'admin/events/?' + q.toString());
      state.es = es;
      es.addEventListener('ready', (e) => {
        if (e.lastEventId) state.lastEventId = e.lastEventId;
        state.reconnectDelay = 1000;
        setConn('live', 'Live');
        resolve();
      });
      es.addEventListener('status', onStatusEvent);
      es.onerror = () => {
        if (state.es !== es) return;
        // EventSource would retry with the same ticket, which works once:
        // close it and reconnect with a new ticket instead.
        es.close();
        state.es = null;
        setConn('reconnecting', 'Reconnecting…');
        scheduleReconnect();
        resolve();
      };
    });
  }

  function scheduleReconnect() {
    clearTimeout(state.reconnectTimer);
    const delay = state.reconnectDelay;
    state.reconnectDelay = Math.min(delay * 2, 15000);
    state.reconnectTimer = setTimeout(async () => {
      await connectEvents();
      loadCounts();
    }, delay);
  }

  function onStatusEvent(e) {
    if (e.lastEventId) state.lastEventId = e.lastEventId;
    let d;
    try { d = JSON.parse(e.data); } catch (err) { return; }
    state.lastEvent.set(d.user_id, { data: d, received: Date.now() });
    if (d.online_status === 'offline') state.present.delete(d.user_id);
    else state.present.set(d.user_id, d.online_status);
    renderCounts();
    const u = state.users.get(d.user_id);
    if (u) {
      applyEvent(u, d);
      upsert(u, true);
      queueRefresh(d.user_id);
    } else if (matchesFilter({ username: d.username, online_status: d.online_status })) {
      queueRefresh(d.user_id);
    }
    announce(d.username + ' is now ' + d.online_status);
  }

  function applyEvent(u, d) {
    u.online_status = d.online_status;
    u.is_online = d.online_status !== 'offline';
    u.last_seen = d.last_seen;
    if (d.online_status === 'offline') u.live_sessions = 0;
  }

  // fresh applies the events received since a read started over what that
  // read returned, so a slow read never undoes a newer event.
  function fresh(u, readStarted) {
    const ev = state.lastEvent.get(u.id);
    if (ev && ev.received >= readStarted) applyEvent(u, ev.data);
    return u;
  }

  // queueRefresh reloads users (sessions count, account fields) shortly
  // after events, a few at a time.
  function queueRefresh(id) {
    state.pendingRefresh.add(id);
    if (!state.refreshTimer) state.refreshTimer = setTimeout(flushRefresh, 250);
  }

  async function flushRefresh() {
    state.refreshTimer = null;
    const ids = [...state.pendingRefresh].slice(0, 20);
    for (const id of ids) state.pendingRefresh.delete(id);
    await Promise.all(ids.map(refreshUser));
    if (state.pendingRefresh.size > 0) state.refreshTimer = setTimeout(flushRefresh, 250);
  }

  async function refreshUser(id) {
    const started = Date.now();
    try {
      const u = await api('GET', 'admin/users/' + id + '/');
      delete u.sessions;
      upsert(fresh(u, started), false);
      if (state.drawerUserId === id) renderDrawer(u.id);
    } catch (e) {
      if (e.status === 404) removeRow(id);
    }
  }

  // ---------------------------------------------------------------- list

  function matchesFilter(u) {
    const f = state.filter;
    if (f.status && u.online_status !== f.status) return false;
    if (f.search) {
      const s = f.search.toLowerCase();
      const fields = [u.username, u.email, u.first_name, u.last_name];
      if (!fields.some((v) => v && v.toLowerCase().includes(s))) return false;
    }
    return true;
  }

  async function loadUsers(reset) {
    const generation = reset ? ++state.listGeneration : state.listGeneration;
    let url;
    if (reset) {
      const q = new URLSearchParams({ per_page: String(PAGE_SIZE) });
      if (state.filter.search) q.set('search', state.filter.search);
      if (state.filter.status) q.set('online_status', state.filter.status);
      url = 'admin/users/?' + q.toString();
    } else {
      if (!state.next) return;
      const n = new URL(state.next, location.href);
      url = n.pathname + n.search; // same origin, whatever host the API saw
    }
    $('load-more').disabled = true;
    $('list-status').textContent = 'Loading users…';
    const started = Date.now();
    try {
      const page = await api('GET', url);
      if (generation !== state.listGeneration) return; // the filter changed meanwhile
      if (reset) {
        state.users.clear();
        state.rows.clear();
        $('users').tBodies[0].replaceChildren();
      }
      for (const u of page.results) upsert(fresh(u, started), false);
      state.next = page.next;
      if (state.total === null) state.total = page.count;
      $('load-more').hidden = !page.next;
      $('list-status').textContent = state.users.size + ' user' + (state.users.size === 1 ? '' : 's') + ' shown' + (page.next ? '; more to load' : '');
      renderCounts();
      updateEmpty();
    } catch (e) {
      if (state.access) $('list-status').textContent = 'Could not load users: ' + e.message;
    } finally {
      $('load-more').disabled = false;
    }
  }

  async function loadCounts() {
    if (!state.access) return;
    const started = Date.now();
    try {
      const [online, first] = await Promise.all([
        api('GET', 'admin/users/online/'),
        api('GET', 'admin/users/?per_page=1'),
      ]);
      state.present.clear();
      for (const u of online.online_users) state.present.set(u.id, u.online_status);
      // Events received during the read win.
      for (const [id, ev] of state.lastEvent) {
        if (ev.received < started) continue;
        if (ev.data.online_status === 'offline') state.present.delete(id);
        else state.present.set(id, ev.data.online_status);
      }
      state.total = first.count;
      renderCounts();
    } catch (e) { /* the next reconciliation retries */ }
  }

  function renderCounts() {
    let online = 0;
    let away = 0;
    for (const s of state.present.values()) {
      if (s === 'online') online++;
      else if (s === 'away') away++;
    }
    $('count-online').textContent = String(online);
    $('count-away').textContent = String(away);
    if (state.total !== null) {
      $('count-total').textContent = String(state.total);
      $('count-offline').textContent = String(Math.max(0, state.total - online - away));
    }
  }

  function updateEmpty() {
    $('empty').hidden = state.users.size > 0;
  }

  // ---------------------------------------------------------------- rows

  function compare(a, b) {
    const r = STATUS_RANK[a.online_status] - STATUS_RANK[b.online_status];
    if (r !== 0) return r;
    return a.username.localeCompare(b.username);
  }

  function upsert(u, flash) {
    if (!matchesFilter(u)) {
      removeRow(u.id);
      return;
    }
    state.users.set(u.id, u);
    let tr = state.rows.get(u.id);
    if (!tr) {
      tr = buildRow(u);
      state.rows.set(u.id, tr);
    }
    // Compared with what the row shows: the user object may already hold
    // the new status.
    const moved = tr.dataset.status !== u.online_status || tr.dataset.username !== u.username;
    fillRow(tr, u);
    if (moved || !tr.isConnected) placeRow(tr, u);
    if (flash) {
      tr.classList.remove('flash');
      void tr.offsetWidth; // restart the animation
      tr.classList.add('flash');
    }
    updateEmpty();
  }

  function removeRow(id) {
    const tr = state.rows.get(id);
    if (tr) tr.remove();
    state.rows.delete(id);
    state.users.delete(id);
    updateEmpty();
  }

  // placeRow moves tr to its sorted place: online first, then away, then
  // offline, by username within each.
  function placeRow(tr, u) {
    const tbody = $('users').tBodies[0];
    let before = null;
    for (const other of tbody.rows) {
      if (other === tr) continue;
      const o = state.users.get(Number(other.dataset.id));
      if (o && compare(u, o) < 0) { before = other; break; }
    }
    if (before) {
      if (tr.nextSibling !== before) tbody.insertBefore(tr, before);
    } else if (tbody.lastElementChild !== tr) {
      tbody.append(tr);
    }
  }

  function buildRow(u) {
    const tr = el('tr', { 'data-id': String(u.id) });
    const name = el('span', { class: 'name' });
    const sub = el('span', { class: 'sub' });
    const label = el('span', { class: 'label' });
    const seen = el('time');
    const cells = {
      // One child per cell, so that the phone layout (label | value) holds.
      user: el('td', { class: 'user', 'data-label': 'User' }, el('div', null, name, sub)),
      status: el('td', { class: 'status', 'data-label': 'Status' }, el('span', null, el('span', { class: 'dot', 'aria-hidden': 'true' }), label)),
      seen: el('td', { class: 'seen', 'data-label': 'Last seen' }, seen),
      sessions: el('td', { class: 'sessions', 'data-label': 'Sessions' }),
      role: el('td', { class: 'role', 'data-label': 'Role' }),
      account: el('td', { class: 'account', 'data-label': 'Account' }, el('span', { class: 'badge' })),
      actions: el('td', { class: 'actions', 'data-label': 'Actions' }),
    };
    tr.append(...Object.values(cells));
    tr._cells = cells;
    tr._parts = { name, sub, label, seen };

    const group = el('div', { class: 'actions-group', role: 'group' });
    const details = el('button', { type: 'button', class: 'secondary', text: 'Details', 'data-action': 'details' });
    details.addEventListener('click', () => openDrawer(Number(tr.dataset.id), details));
    group.append(details);
    if (state.me && state.me.role === 'admin') {
      const forceLogout = el('button', { type: 'button', class: 'danger', text: 'Log out', 'data-action': 'force-logout' });
      forceLogout.addEventListener('click', () => confirmThen(forceLogout, 'Confirm log out', () => forceLogoutUser(Number(tr.dataset.id))));
      const suspend = el('button', { type: 'button', class: 'secondary', 'data-action': 'suspend' });
      suspend.addEventListener('click', () => {
        const cur = state.users.get(Number(tr.dataset.id));
        if (!cur) return;
        if (cur.status === 'active') confirmThen(suspend, 'Confirm suspend', () => accountAction(cur.id, 'suspend'));
        else accountAction(cur.id, 'activate');
      });
      const select = el('select', { 'data-action': 'status-select' },
        el('option', { value: '', text: 'Set status…' }),
        el('option', { value: 'online', text: 'Online (clear)' }),
        el('option', { value: 'away', text: 'Away' }),
        el('option', { value: 'offline', text: 'Invisible' }));
      const apply = el('button', { type: 'button', class: 'secondary', text: 'Set', 'data-action': 'set-status' });
      apply.addEventListener('click', () => {
        if (select.value) setStatus(Number(tr.dataset.id), select.value, select);
        else select.focus();
      });
      group.append(forceLogout, suspend, select, apply);
      tr._actions = { forceLogout, suspend, select, apply };
    }
    tr._details = details;
    cells.actions.append(group);
    return tr;
  }

  function fillRow(tr, u) {
    const p = tr._parts;
    const c = tr._cells;
    tr.dataset.status = u.online_status;
    tr.dataset.username = u.username;
    p.name.textContent = u.username;
    p.sub.textContent = u.full_name || u.email || '';
    p.label.textContent = STATUS_LABEL[u.online_status] || u.online_status;
    setTime(p.seen, u.last_seen);
    c.sessions.textContent = u.live_sessions == null ? '–' : String(u.live_sessions);
    c.role.textContent = u.role;
    const badge = c.account.firstChild;
    badge.textContent = u.status;
    badge.dataset.account = u.status;
    tr._details.setAttribute('aria-label', 'Details of ' + u.username);
    const a = tr._actions;
    if (a) {
      const self = state.me && u.id === state.me.id;
      a.forceLogout.setAttribute('aria-label', 'Log out ' + u.username + ' everywhere');
      a.forceLogout.disabled = self;
      if (self) a.forceLogout.title = 'Use Log out at the top for your own session';
      a.suspend.textContent = u.status === 'active' ? 'Suspend' : 'Activate';
      a.suspend.setAttribute('aria-label', (u.status === 'active' ? 'Suspend ' : 'Activate ') + u.username);
      a.suspend.disabled = self;
      if (self) a.suspend.title = 'You cannot suspend your own account';
      a.select.setAttribute('aria-label', 'Manual status for ' + u.username);
      a.apply.setAttribute('aria-label', 'Set the manual status of ' + u.username);
    }
  }

  function setTime(node, iso) {
    if (!iso) {
      node.textContent = 'never';
      node.removeAttribute('datetime');
      node.removeAttribute('title');
      return;
    }
    node.dateTime = iso;
    node.title = new Date(iso).toLocaleString() + ' (' + iso + ')';
    node.textContent = ago(iso);
  }

  function ago(iso) {
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 10) return 'just now';
    if (s < 60) return s + ' s ago';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ago';
    const h = Math.floor(m / 60);
    if (h < 48) return h + ' h ago';
    return Math.floor(h / 24) + ' days ago';
  }

  function refreshTimes() {
    for (const node of document.querySelectorAll('time[datetime]')) node.textContent = ago(node.dateTime);
  }

  // ---------------------------------------------------------------- actions

  // confirmThen turns a destructive button into its own confirmation: the
  // second press within 5 s acts.
  function confirmThen(button, confirmText, act) {
    if (button.dataset.confirming === '1') {
      resetConfirm(button);
      act();
      return;
    }
    button.dataset.confirming = '1';
    button.dataset.text = button.textContent;
    button.textContent = confirmText;
    button.classList.add('confirm');
    button._timer = setTimeout(() => resetConfirm(button), 5000);
  }

  function resetConfirm(button) {
    clearTimeout(button._timer);
    if (button.dataset.confirming !== '1') return;
    button.dataset.confirming = '';
    button.textContent = button.dataset.text;
    button.classList.remove('confirm');
  }

  async function forceLogoutUser(id) {
    const u = state.users.get(id);
    try {
      const r = await api('POST', 'admin/users/' + id + '/force-logout/');
      toast((u ? u.username + ': ' : '') + r.message);
      queueRefresh(id);
    } catch (e) {
      toast('Log out failed: ' + e.message, true);
    }
  }

  async function accountAction(id, action) {
    const u = state.users.get(id);
    try {
      const r = await api('POST', 'admin/users/' + id + '/' + action + '/');
      toast((u ? u.username + ': ' : '') + r.message);
      await refreshUser(id);
    } catch (e) {
      toast(action + ' failed: ' + e.message, true);
    }
  }

  async function setStatus(id, status, select) {
    const started = Date.now();
    try {
      const u = await api('POST', 'admin/users/' + id + '/set-online-status/', { status });
      upsert(fresh(u, started), true);
      toast(u.username + ': status set to ' + (status === 'online' ? 'online (override cleared)' : status === 'offline' ? 'invisible' : status));
      select.value = '';
    } catch (e) {
      toast('Setting the status failed: ' + e.message, true);
    }
  }

  // ---------------------------------------------------------------- drawer

  async function openDrawer(id, opener) {
    state.drawerUserId = id;
    state.drawerOpener = opener || null;
    $('drawer-title').textContent = (state.users.get(id) || {}).username || 'User';
    $('drawer-body').replaceChildren(el('p', { class: 'note', text: 'Loading…' }));
    $('drawer').hidden = false;
    $('backdrop').hidden = false;
    $('drawer-close').focus();
    await renderDrawer(id);
  }

  async function renderDrawer(id) {
    let u;
    try {
      u = await api('GET', 'admin/users/' + id + '/');
    } catch (e) {
      if (state.drawerUserId === id) $('drawer-body').replaceChildren(el('p', { class: 'message', text: 'Could not load the user: ' + e.message }));
      return;
    }
    if (state.drawerUserId !== id) return;
    $('drawer-title').textContent = u.username;
    const dl = el('dl');
    const add = (k, v) => dl.append(el('dt', { text: k }), el('dd', null, v));
    const seen = el('time');
    setTime(seen, u.last_seen);
    add('Status', STATUS_LABEL[u.online_status] || u.online_status);
    add('Last seen', seen);
    add('Live sessions', String(u.live_sessions == null ? '–' : u.live_sessions));
    add('Name', u.full_name || '—');
    add('Email', u.email || '—');
    add('Role', u.role);
    add('Account', u.status);
    add('Created', new Date(u.created_at).toLocaleString());
    add('Updated', new Date(u.updated_at).toLocaleString());
    add('User ID', String(u.id));

    const rows = u.sessions.map((s) => {
      const created = el('time');
      setTime(created, s.created_at);
      const last = el('time');
      setTime(last, s.last_seen);
      return el('tr', null,
        el('td', { 'data-label': 'Created' }, created),
        el('td', { 'data-label': 'Last seen' }, last),
        el('td', { 'data-label': 'Live', text: s.live ? 'yes' : 'no' }),
        el('td', { class: 'ua', 'data-label': 'User agent', text: s.user_agent || '—' }));
    });
    const sessions = rows.length === 0
      ? el('p', { class: 'note', text: 'No open sessions.' })
      : el('table', { class: 'sessions-table' },
        el('caption', { class: 'visually-hidden', text: 'Sessions of ' + u.username }),
        el('thead', null, el('tr', null,
          el('th', { scope: 'col', text: 'Created' }), el('th', { scope: 'col', text: 'Last seen' }),
          el('th', { scope: 'col', text: 'Live' }), el('th', { scope: 'col', text: 'User agent' }))),
        el('tbody', null, ...rows));
    $('drawer-body').replaceChildren(dl, el('h3', { text: 'Sessions (' + u.sessions.length + ')' }), sessions);
  }

  function closeDrawer() {
    if ($('drawer').hidden) return;
    $('drawer').hidden = true;
    $('backdrop').hidden = true;
    state.drawerUserId = null;
    const opener = state.drawerOpener;
    state.drawerOpener = null;
    if (opener && opener.isConnected) opener.focus();
  }

  // Keep the keyboard inside the open drawer; Escape closes it.
  function onKeydown(e) {
    if ($('drawer').hidden) return;
    if (e.key === 'Escape') {
      e.preventDefault();
      closeDrawer();
      return;
    }
    if (e.key !== 'Tab') return;
    const focusable = [...$('drawer').querySelectorAll('button, [href], input, select, [tabindex]:not([tabindex="-1"])')].filter((n) => !n.disabled);
    if (focusable.length === 0) return;
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (e.shiftKey && document.activeElement === first) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && document.activeElement === last) {
      e.preventDefault();
      first.focus();
    } else if (!$('drawer').contains(document.activeElement)) {
      e.preventDefault();
      first.focus();
    }
  }

  // ---------------------------------------------------------------- feedback

  let announceTimer = null;
  const announcements = [];
  // announce tells screen readers about changes, a few at a time.
  function announce(text) {
    announcements.push(text);
    if (announceTimer) return;
    announceTimer = setTimeout(() => {
      announceTimer = null;
      const batch = announcements.splice(0);
      $('announcer').textContent = batch.length > 3 ? batch.length + ' status changes' : batch.join('. ');
    }, 1000);
  }

  let toastTimer = null;
  function toast(text, isError) {
    const t = $('toast');
    t.textContent = text;
    t.classList.toggle('error', !!isError);
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 4000);
  }

  // ---------------------------------------------------------------- start

  function init() {
    $('login-form').addEventListener('submit', onLogin);
    $('logout').addEventListener('click', logout);
    $('load-more').addEventListener('click', () => loadUsers(false));
    $('drawer-close').addEventListener('click', closeDrawer);
    $('backdrop').addEventListener('click', closeDrawer);
    document.addEventListener('keydown', onKeydown);
    $('filters').addEventListener('submit', (e) => e.preventDefault());
    let searchTimer = null;
    $('search').addEventListener('input', () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => {
        state.filter.search = $('search').value.trim();
        loadUsers(true);
      }, 250);
    });
    $('status-filter').addEventListener('change', () => {
      state.filter.status = $('status-filter').value;
      loadUsers(true);
    });
    // Back in view: say so at once rather than at the next tick.
    document.addEventListener('visibilitychange', () => { if (!document.hidden) heartbeat(); });

    if (loadTokens()) {
      api('GET', 'profile/').then((me) => {
        if (me.role === 'admin' || me.role === 'moderator') startApp(me);
        else sessionEnded('This dashboard is for admins and moderators.');
      }).catch((e) => {
        if (state.access) showLogin(e.status === 0 ? 'Cannot reach presenced.' : 'Please sign in again.');
      });
    } else {
      showLogin();
    }
  }

  init();
}());
