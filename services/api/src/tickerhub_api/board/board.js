// The TickerHub board: plain JavaScript speaking only the documented protocol
// (docs/protocol.md): /ws/prices with a watchlist, diffs, bars and resume, plus
// GET /tickers/{symbol}/bars for the day so far. No build step, no dependencies.
"use strict";

(() => {
  const STORE_KEY = "tickerhub.watchlist"; // localStorage: the user's symbols
  const KEY_KEY = "tickerhub.apiKey"; // sessionStorage: the API key (never in the URL)
  const SYMBOL = /^\^?[A-Z0-9][A-Z0-9.=-]{0,18}$/;
  const PING_MS = 20000;
  const FLASH_MS = 700;
  const SPARK_W = 120;
  const SPARK_H = 28;

  const $ = (id) => document.getElementById(id);
  const rowsEl = $("rows");

  // -- state ---------------------------------------------------------------------
  const quotes = new Map(); // symbol -> merged quote
  const bars = new Map(); // symbol -> Map(t -> bar), highest revision kept
  const rows = new Map(); // symbol -> <tr>
  let wanted = initialWatchlist(); // array of symbols, or null: every symbol
  let unknown = new Set();
  const notPolled = new Map(); // symbol -> why the hub will not poll it (unknown_symbol, capacity)
  let seq = null;
  let epoch = null;
  let resumed = null; // the last snapshot's "resumed" (true: it only brought changes)
  let socket = null;
  let attempt = 0;
  let retryTimer = null;
  let countdownTimer = null;
  let pingTimer = null;
  let sortKey = "symbol";
  let sortDir = 1;
  let refused = false;

  function initialWatchlist() {
    const fromUrl = new URLSearchParams(location.search).get("symbols");
    const raw = fromUrl ?? localStorage.getItem(STORE_KEY);
    if (!raw) return null;
    const list = raw.split(",").map((s) => s.trim().toUpperCase()).filter((s) => SYMBOL.test(s));
    return list.length ? [...new Set(list)] : null;
  }

  function saveWatchlist() {
    if (wanted) localStorage.setItem(STORE_KEY, wanted.join(","));
  }

  function apiKey() {
    return sessionStorage.getItem(KEY_KEY);
  }

  // -- connection ------------------------------------------------------------------
  function wsUrl() {
    const url = new URL("/ws/prices", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("bars", "1");
    if (wanted) url.searchParams.set("symbols", wanted.join(","));
    if (epoch !== null && seq !== null) {
      url.searchParams.set("since", String(seq));
      url.searchParams.set("epoch", String(epoch));
      url.searchParams.set("fields", "changed"); // merged below: changed fields suffice
    }
    return url.href;
  }

  function connect() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    setConn("connecting", attempt ? "connecting…" : "connecting…");
    const resuming = epoch !== null && seq !== null;
    const ws = new WebSocket(wsUrl());
    socket = ws;
    let first = true;
    ws.addEventListener("open", () => {
      const key = apiKey();
      if (key) send({ auth: key });
      // A fresh start states the watchlist at once (with keys on and no key, this
      // first non-auth message is what makes the server say it wants one). A resume
      // waits: the URL carries the watchlist, and the answer says if it was applied.
      if (!resuming) sendWatchlist();
      clearInterval(pingTimer);
      pingTimer = setInterval(() => send("ping"), PING_MS);
    });
    ws.addEventListener("message", (evt) => {
      if (evt.data === "pong") return;
      let msg;
      try { msg = JSON.parse(evt.data); } catch { return; }
      if (msg.type === "snapshot" && first) {
        first = false;
        attempt = 0;
        setConn("live", "live");
        if (resuming && !("watchlist" in msg) && !msg.resumed) sendWatchlist();
        loadBars(visibleSymbols(msg));
      }
      onMessage(msg);
    });
    ws.addEventListener("close", (evt) => {
      if (socket !== ws) return;
      clearInterval(pingTimer);
      if (evt.code === 1008) {
        refuse(evt.reason);
        return;
      }
      scheduleReconnect(evt.code);
    });
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(typeof message === "string" ? message : JSON.stringify(message));
    }
  }

  function sendWatchlist() {
    send({ watchlist: wanted });
  }

  function scheduleReconnect() {
    attempt += 1;
    // 0.5 s doubling, capped at 10 s, drawn from the upper half (spreads a restart's clients).
    const ceiling = Math.min(10, 0.5 * 2 ** (attempt - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    const until = Date.now() + delay * 1000;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      setConn("reconnecting", `reconnecting in ${left} s`);
    };
    tick();
    countdownTimer = setInterval(tick, 250);
    retryTimer = setTimeout(connect, delay * 1000);
  }

  function refuse(reason) {
    refused = true;
    const wrongKey = /invalid API key/i.test(reason);
    const hadKey = apiKey() !== null;
    if (wrongKey) sessionStorage.removeItem(KEY_KEY);
    setConn("refused", wrongKey ? "refused: wrong API key" : "refused");
    $("auth").hidden = false;
    $("auth-message").textContent = wrongKey
      ? "That API key was refused by the hub (invalid API key). Check it and try again."
      : hadKey
        ? `The hub refused the connection: ${reason || "policy"}.`
        : "This hub needs an API key.";
    $("auth-key").focus();
  }

  $("auth-form").addEventListener("submit", (evt) => {
    evt.preventDefault();
    const key = $("auth-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_KEY, key);
    $("auth-key").value = "";
    $("auth").hidden = true;
    refused = false;
    attempt = 0;
    connect();
  });

  function setConn(state, text) {
    $("conn").dataset.state = state;
    $("conn-text").textContent = text;
  }

  // -- protocol messages -----------------------------------------------------------
  function onMessage(msg) {
    switch (msg.type) {
      case "snapshot":
        if (!msg.partial) quotes.clear();
        for (const [sym, q] of Object.entries(msg.data)) {
          quotes.set(sym, msg.partial ? { ...(quotes.get(sym) ?? {}), ...q } : q);
        }
        if ("watchlist" in msg) wanted = fromServer(msg.watchlist);
        if (msg.unknown) for (const s of msg.unknown) unknown.add(s);
        if (!msg.partial && msg.unknown) unknown = new Set(msg.unknown);
        if ("epoch" in msg) epoch = msg.epoch;
        resumed = msg.resumed ?? null;
        for (const s of Object.keys(msg.data)) {
          unknown.delete(s);
          notPolled.delete(s);
        }
        if (msg.subscribed) loadBars(msg.subscribed.filter((s) => !unknown.has(s)));
        setSeq(msg.seq);
        renderAll();
        break;
      case "diff":
        for (const [sym, fields] of Object.entries(msg.data)) {
          const before = quotes.get(sym);
          const after = { ...(before ?? {}), ...fields };
          quotes.set(sym, after);
          unknown.delete(sym);
          if (!shown(sym)) continue;
          const row = rows.get(sym) ?? addRow(sym);
          fillRow(row, after);
          if (before && "price" in fields && before.price !== null && fields.price !== null) {
            flash(row, fields.price > before.price ? "up" : fields.price < before.price ? "down" : null);
          }
        }
        setSeq(msg.seq);
        scheduleSort();
        break;
      case "unsubscribed":
        wanted = fromServer(msg.watchlist);
        for (const s of msg.symbols) {
          unknown.delete(s);
          quotes.delete(s);
          bars.delete(s);
        }
        renderAll();
        break;
      case "bar":
        addBar(msg);
        break;
      case "error":
        $("add-error").textContent = msg.message;
        if (Array.isArray(msg.symbols)) {
          // Symbols on demand the hub refused: they left the server's filter, not ours.
          const why = msg.code === "unknown_symbol" ? "unknown to the source" : "hub at capacity";
          for (const s of msg.symbols) notPolled.set(s, why);
          renderAll();
        }
        break;
      default:
        break;
    }
  }

  // The server's filter, plus the refused symbols the page still lists (so the user
  // sees why they have no price, and can remove them).
  function fromServer(list) {
    if (list === null || wanted === null) return list;
    const kept = wanted.filter((s) => notPolled.has(s) && !list.includes(s));
    return [...list, ...kept];
  }

  function setSeq(value) {
    if (typeof value === "number") {
      seq = value;
      $("seq").textContent = value.toLocaleString("en-US");
    }
  }

  // -- watchlist edits -----------------------------------------------------------------
  $("add-form").addEventListener("submit", (evt) => {
    evt.preventDefault();
    const input = $("add-symbol");
    const sym = input.value.trim().toUpperCase();
    $("add-error").textContent = "";
    if (!SYMBOL.test(sym)) {
      $("add-error").textContent = `"${input.value.trim()}" is not a ticker symbol`;
      return;
    }
    input.value = "";
    if (wanted === null) wanted = [...quotes.keys()];
    if (!wanted.includes(sym)) wanted = [...wanted, sym];
    notPolled.delete(sym);
    saveWatchlist();
    send({ subscribe: [sym] });
    renderAll();
  });

  function remove(sym) {
    if (wanted === null) wanted = [...quotes.keys()];
    wanted = wanted.filter((s) => s !== sym);
    saveWatchlist();
    send({ unsubscribe: [sym] });
    unknown.delete(sym);
    notPolled.delete(sym);
    renderAll();
    $("add-symbol").focus();
  }

  // -- bars and sparklines ---------------------------------------------------------
  async function loadBars(symbols) {
    const headers = {};
    const key = apiKey();
    if (key) headers["X-API-Key"] = key;
    await Promise.all(
      symbols.map(async (sym) => {
        try {
          const answer = await fetch(`/tickers/${encodeURIComponent(sym)}/bars?limit=390`, { headers });
          if (!answer.ok) return;
          for (const bar of await answer.json()) addBar(bar, false);
          drawSpark(sym);
        } catch {
          // The stream's bar messages fill in; nothing to show for now.
        }
      }),
    );
  }

  function addBar(bar, draw = true) {
    let series = bars.get(bar.symbol);
    if (!series) bars.set(bar.symbol, (series = new Map()));
    const held = series.get(bar.t);
    if (held && held.revision >= bar.revision) return;
    series.set(bar.t, bar);
    if (series.size > 1440) series.delete(series.keys().next().value);
    if (draw) drawSpark(bar.symbol);
  }

  function drawSpark(sym) {
    const row = rows.get(sym);
    if (!row) return;
    const cell = row.querySelector(".spark-cell");
    const series = [...(bars.get(sym)?.values() ?? [])].sort((a, b) => (a.t < b.t ? -1 : 1));
    if (series.length === 0) {
      cell.textContent = "";
      return;
    }
    const closes = series.map((b) => b.c);
    const prev = quotes.get(sym)?.previous_close;
    const lo = Math.min(...series.map((b) => b.l), prev ?? Infinity);
    const hi = Math.max(...series.map((b) => b.h), prev ?? -Infinity);
    const span = hi - lo || 1;
    const y = (v) => (SPARK_H - 2 - ((v - lo) / span) * (SPARK_H - 4)).toFixed(1);
    const step = closes.length > 1 ? (SPARK_W - 2) / (closes.length - 1) : 0;
    const points = closes.map((c, i) => `${(1 + i * step).toFixed(1)},${y(c)}`).join(" ");
    const first = prev ?? series[0].o;
    const last = closes[closes.length - 1];
    const trend = last > first ? "up" : last < first ? "down" : "flat";
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", `spark ${trend}`);
    svg.setAttribute("viewBox", `0 0 ${SPARK_W} ${SPARK_H}`);
    svg.setAttribute("role", "img");
    svg.setAttribute(
      "aria-label",
      `${sym} today, ${series.length} one-minute bars: ${fmtPrice(series[0].o)} to ${fmtPrice(last)}`,
    );
    if (prev != null) {
      const base = document.createElementNS(ns, "line");
      base.setAttribute("class", "base");
      base.setAttribute("x1", "0");
      base.setAttribute("x2", String(SPARK_W));
      base.setAttribute("y1", y(prev));
      base.setAttribute("y2", y(prev));
      svg.append(base);
    }
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", closes.length > 1 ? points : `1,${y(last)} ${SPARK_W - 1},${y(last)}`);
    svg.append(line);
    cell.replaceChildren(svg);
    cell.dataset.bars = String(series.length);
  }

  // -- rendering -------------------------------------------------------------------
  function shown(sym) {
    return wanted === null || wanted.includes(sym);
  }

  function visibleSymbols(msg) {
    return wanted ?? Object.keys(msg.data ?? {});
  }

  function renderAll() {
    const symbols = wanted ?? [...quotes.keys()];
    for (const [sym, row] of rows) {
      if (!symbols.includes(sym)) {
        row.remove();
        rows.delete(sym);
      }
    }
    for (const sym of symbols) {
      const row = rows.get(sym) ?? addRow(sym);
      const quote = quotes.get(sym);
      if (quote) fillRow(row, quote);
      else fillUnknown(row, sym);
    }
    $("empty").hidden = symbols.length > 0;
    sortRows();
  }

  function addRow(sym) {
    const row = document.createElement("tr");
    row.dataset.symbol = sym;
    row.innerHTML =
      '<th scope="row"><span class="sym"></span><span class="tags"></span><span class="name"></span></th>' +
      '<td class="num price"><span class="px"></span></td><td class="num change"></td><td class="num pct"></td>' +
      '<td class="spark-cell"></td><td class="state"></td><td class="age"></td>' +
      '<td><button type="button" class="remove">✕</button></td>';
    row.querySelector(".sym").textContent = sym;
    const button = row.querySelector(".remove");
    button.setAttribute("aria-label", `Remove ${sym}`);
    button.title = `Remove ${sym}`;
    button.addEventListener("click", () => remove(sym));
    rows.set(sym, row);
    rowsEl.append(row);
    drawSpark(sym);
    return row;
  }

  function fillUnknown(row, sym) {
    row.className = "unknown";
    row.querySelector(".tags").innerHTML = '<span class="tag unknown">unknown</span>';
    row.querySelector(".name").textContent =
      notPolled.get(sym) ?? (unknown.has(sym) ? "not held by this hub" : "waiting…");
    for (const cls of [".price .px", ".change", ".pct", ".state", ".age"]) row.querySelector(cls).textContent = "–";
  }

  function fillRow(row, q) {
    row.classList.remove("unknown");
    row.classList.toggle("stale", Boolean(q.stale));
    row.querySelector(".tags").innerHTML = q.stale ? '<span class="tag stale">stale</span>' : "";
    row.querySelector(".name").textContent = q.name ?? "";
    row.querySelector(".price .px").textContent = fmtPrice(q.price);
    const dir = q.change > 0 ? "up" : q.change < 0 ? "down" : "flat";
    const arrow = dir === "up" ? "▲" : dir === "down" ? "▼" : "";
    const change = row.querySelector(".change");
    change.className = `num change ${dir}`;
    change.textContent = q.change == null ? "–" : `${arrow} ${signed(q.change, 2)}`.trim();
    const pct = row.querySelector(".pct");
    pct.className = `num pct ${dir}`;
    pct.textContent = q.change_percent == null ? "–" : `${signed(q.change_percent, 2)} %`;
    row.querySelector(".state").innerHTML = badge(q.market_state);
    const age = row.querySelector(".age");
    age.dataset.time = q.market_time ?? "";
    age.textContent = ago(q.market_time);
    row.dataset.change = q.change ?? "";
    row.dataset.pct = q.change_percent ?? "";
  }

  // A short up/down flash of the price cell on each tick that moves it.
  function flash(row, dir) {
    if (!dir) return;
    const cell = row.querySelector(".price");
    cell.classList.remove("flash-up", "flash-down");
    void cell.offsetWidth; // restart the animation
    cell.classList.add(`flash-${dir}`);
    clearTimeout(cell._flash);
    cell._flash = setTimeout(() => cell.classList.remove(`flash-${dir}`), FLASH_MS);
  }

  const STATES = {
    PRE: ["pre", "Pre"],
    PREPRE: ["pre", "Pre"],
    REGULAR: ["regular", "Regular"],
    POST: ["post", "Post"],
    POSTPOST: ["post", "Post"],
    CLOSED: ["closed", "Closed"],
  };

  function badge(state) {
    if (!state) return '<span class="badge">–</span>';
    const [cls, label] = STATES[state] ?? ["", state.charAt(0) + state.slice(1).toLowerCase()];
    return `<span class="badge ${cls}">${label.replace(/[<>&]/g, "")}</span>`;
  }

  function fmtPrice(v) {
    if (v == null) return "–";
    const digits = Math.abs(v) < 1 ? 4 : 2;
    return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function signed(v, digits) {
    const text = Math.abs(v).toLocaleString("en-US", {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
    return v > 0 ? `+${text}` : v < 0 ? `−${text}` : text;
  }

  function ago(iso) {
    if (!iso) return "–";
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return new Date(iso).toLocaleDateString();
  }

  setInterval(() => {
    for (const cell of rowsEl.querySelectorAll("td.age[data-time]")) {
      if (cell.dataset.time) cell.textContent = ago(cell.dataset.time);
    }
  }, 1000);

  // -- sorting -----------------------------------------------------------------------
  let sortPending = false;

  function scheduleSort() {
    if (sortKey === "symbol" || sortPending) return;
    sortPending = true;
    setTimeout(() => {
      sortPending = false;
      sortRows();
    }, 1000); // rows move at most once a second: readable while prices tick
  }

  function sortRows() {
    const value = (sym) => {
      if (sortKey === "symbol") return sym;
      const v = quotes.get(sym)?.[sortKey];
      return v == null ? -Infinity : sortKey === "change" ? Math.abs(v) : v;
    };
    const ordered = [...rows.keys()].sort((a, b) => {
      const va = value(a);
      const vb = value(b);
      return (va < vb ? -1 : va > vb ? 1 : a < b ? -1 : 1) * sortDir;
    });
    ordered.forEach((sym, i) => {
      const row = rows.get(sym);
      if (rowsEl.children[i] !== row) rowsEl.insertBefore(row, rowsEl.children[i] ?? null);
    });
  }

  for (const button of document.querySelectorAll("thead button[data-sort]")) {
    button.addEventListener("click", () => {
      const key = button.dataset.sort;
      if (key === sortKey) sortDir = -sortDir;
      else {
        sortKey = key;
        sortDir = key === "symbol" ? 1 : -1; // biggest movers first
      }
      for (const th of document.querySelectorAll("thead th[data-sort]")) {
        if (th.dataset.sort === sortKey) th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
        else th.removeAttribute("aria-sort");
      }
      sortRows();
    });
  }

  // Test and debugging hook: what the page holds (read-only).
  window.tickerhubBoard = { quotes, bars, get seq() { return seq; }, get refused() { return refused; }, get resumed() { return resumed; } };

  renderAll();
  connect();
})();
