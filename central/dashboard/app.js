// The bureau dashboard: live alarms (SSE), sites, today's tonnage, weighing search.
// Plain browser JavaScript, no libraries, no network access beyond this server.
"use strict";

(() => {
  const API = "/api/v1";
  const $ = (id) => document.getElementById(id);
  const store = window.localStorage;
  let lang = store.getItem("coalgate.lang") || "zh";
  let token = null;
  let soundOn = store.getItem("coalgate.sound") !== "off";
  let audio = null;
  let lastAlarmId = null;
  let streamAbort = null;
  let nextBefore = null;
  const alarms = new Map(); // id -> alarm
  const fresh = new Set(); // ids of alarms that just arrived (highlighted for a few seconds)
  const siteNames = new Map();
  window.coalgateBeeps = 0; // for tests and for the curious: how many alarm sounds played

  const t = (key) => (window.I18N[lang][key] ?? window.I18N.zh[key] ?? key);
  const codeText = (code) => window.I18N[lang].codes[code] || code;
  const fmtTime = (iso) => iso ? new Date(iso).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB",
    { hour12: false }) : t("never");
  const tonnes = (kg) => (kg / 1000).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB",
    { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const kg = (v) => (v === null || v === undefined ? "—" : v.toLocaleString());

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
    return node;
  }

  function applyLanguage() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.title = `${t("title")} · coalgate`;
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    $("lang").textContent = lang === "zh" ? "English" : "中文";
    $("sound").textContent = soundOn ? t("sound_on") : t("sound_off");
    $("resolve-note").placeholder = t("note_prompt");
    setStreamState(document.body.dataset.stream === "live");
    renderAlarms();
  }

  // --- HTTP -------------------------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, options = {}) {
    const headers = { Authorization: `Bearer ${token}`, ...(options.headers || {}) };
    if (options.body) headers["Content-Type"] = "application/json";
    const r = await fetch(API + path, { ...options, headers });
    if (r.status === 401) { showLogin(t("login_bad")); throw new HttpError(401, "unauthorized"); }
    if (!r.ok) {
      let message = r.statusText;
      try { const body = await r.json(); message = body.message || body.detail || message; } catch (_) { /* keep */ }
      throw new HttpError(r.status, typeof message === "string" ? message : JSON.stringify(message));
    }
    return r.status === 204 ? null : r.json();
  }

  // --- sound ------------------------------------------------------------------------------

  // Generated on the spot with an oscillator: no audio file, works offline.
  function beep(severity) {
    if (!soundOn) return;
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") audio.resume();
      const tones = severity === "critical" ? [880, 660, 880] : [660];
      tones.forEach((freq, i) => {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        const start = audio.currentTime + i * 0.22;
        osc.type = "square";
        osc.frequency.setValueAtTime(freq, start);
        gain.gain.setValueAtTime(0.0001, start);
        gain.gain.exponentialRampToValueAtTime(0.15, start + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.2);
        osc.connect(gain).connect(audio.destination);
        osc.start(start);
        osc.stop(start + 0.21);
      });
      window.coalgateBeeps += 1;
    } catch (err) {
      console.warn("alarm sound unavailable:", err);
    }
  }

  // --- alarms -----------------------------------------------------------------------------

  function detailText(a) {
    const d = a.detail || {};
    const parts = [];
    if (d.plate) parts.push(d.plate);
    if (d.gross_kg !== undefined && d.limit_kg !== undefined) {
      parts.push(`${t("gross")} ${kg(d.gross_kg)} kg > ${kg(d.limit_kg)} kg`);
    }
    if (d.tare_kg !== undefined && d.median_kg !== undefined) {
      parts.push(`${t("tare")} ${kg(d.tare_kg)} kg ≠ ${kg(d.median_kg)} kg`);
    }
    if (d.tare_plate) parts.push(`≠ ${d.tare_plate}`);
    if (d.result) parts.push(d.result);
    if (Array.isArray(d.failed)) parts.push(d.failed.map((c) => t(`chk_${c}`)).join("、"));
    if (d.operator) parts.push(`${t("by")} ${d.operator}${d.role ? ` (${d.role})` : ""}`);
    if (d.reason) parts.push(d.reason);
    if (d.message) parts.push(d.message);
    if (d.silent_s !== undefined) parts.push(`${Math.round(d.silent_s / 60)} min`);
    if (d.waiting_since) parts.push(`${t("waiting_since")} ${fmtTime(d.waiting_since)}`);
    if (a.txn) parts.push(a.txn);
    if (a.seq !== null && a.seq !== undefined) parts.push(`${t("seq")} ${a.seq}`);
    return parts.join(" · ");
  }

  function alarmRow(a) {
    const actions = el("td", { class: "actions" });
    if (a.state === "open") {
      actions.append(el("button", { type: "button", onclick: () => ackAlarm(a.id) }, t("ack")));
    }
    if (a.state !== "resolved") {
      actions.append(el("button", { type: "button", onclick: () => openResolve(a) }, t("resolve")));
    }
    const stateText = t(`st_${a.state}`) + (a.state === "resolved" && a.note ? `：${a.note}` : "")
      + (a.ack_by && a.state === "acknowledged" ? ` (${t("by")} ${a.ack_by})` : "");
    const cls = `alarm ${a.severity} ${a.state}${fresh.has(a.id) ? " fresh" : ""}`;
    return el("tr", { class: cls, "data-id": a.id, "data-code": a.code },
      el("td", {}, fmtTime(a.raised_at)),
      el("td", {}, siteNames.get(a.site) || a.site),
      el("td", { class: "code" }, codeText(a.code)),
      el("td", {}, el("span", { class: `sev ${a.severity}` }, t(`sev_${a.severity}`))),
      el("td", { class: "detail" }, detailText(a)),
      el("td", {}, stateText),
      actions);
  }

  function renderAlarms() {
    const body = $("alarms");
    if (!body) return;
    const showResolved = $("show-resolved").checked;
    const onlyOverrides = $("only-overrides").checked;
    const rows = [...alarms.values()]
      .filter((a) => showResolved || a.state !== "resolved")
      .filter((a) => !onlyOverrides || a.code.startsWith("override_"))
      .sort((x, y) => y.id - x.id);
    body.replaceChildren(...rows.map(alarmRow));
    if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 7, class: "empty" }, t("none"))));
    const open = [...alarms.values()].filter((a) => a.state === "open").length;
    $("alarm-count").textContent = open ? `(${open})` : "";
  }

  async function loadAlarms() {
    const q = ($("show-resolved").checked ? "" : "&state=open&state=acknowledged")
      + ($("only-overrides").checked ? "&category=override" : "");
    const rows = await api(`/alarms?limit=200${q}`);
    alarms.clear();
    for (const a of rows) alarms.set(a.id, a);
    if (rows.length) lastAlarmId = Math.max(lastAlarmId ?? 0, ...rows.map((a) => a.id));
    renderAlarms();
  }

  async function ackAlarm(id) {
    try { alarms.set(id, await api(`/alarms/${id}/ack`, { method: "POST" })); renderAlarms(); }
    catch (err) { window.alert(err.message); }
  }

  let resolving = null;
  function openResolve(a) {
    resolving = a;
    $("resolve-what").textContent = `${siteNames.get(a.site) || a.site} · ${codeText(a.code)} · ${detailText(a)}`;
    $("resolve-note").value = "";
    $("resolve-dialog").showModal();
  }

  async function submitResolve(event) {
    event.preventDefault();
    const note = $("resolve-note").value.trim();
    if (!note || !resolving) return;
    try {
      const done = await api(`/alarms/${resolving.id}/resolve`, { method: "POST", body: JSON.stringify({ note }) });
      alarms.set(done.id, done);
      $("resolve-dialog").close();
      renderAlarms();
      loadSites();
    } catch (err) { window.alert(err.message); }
  }

  // --- live stream (Server-Sent Events read with fetch, so the token goes in a header) -----

  function setStreamState(live) {
    document.body.dataset.stream = live ? "live" : "off";
    const pill = $("stream-state");
    pill.className = `pill ${live ? "on" : "off"}`;
    pill.textContent = live ? t("stream_on") : t("stream_off");
  }

  function onAlarm(a) {
    const isNew = !alarms.has(a.id);
    alarms.set(a.id, a);
    lastAlarmId = Math.max(lastAlarmId ?? 0, a.id);
    if (isNew) {
      fresh.add(a.id);
      setTimeout(() => { fresh.delete(a.id); renderAlarms(); }, 6000);
    }
    renderAlarms();
    if (isNew) {
      beep(a.severity);
      loadSites().catch(() => {});
    }
  }

  async function stream() {
    streamAbort = new AbortController();
    const after = lastAlarmId !== null ? `?after_id=${lastAlarmId}` : "";
    try {
      const r = await fetch(`${API}/alarms/stream${after}`, {
        headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
        signal: streamAbort.signal,
      });
      if (r.status === 401) { showLogin(t("login_bad")); return; }
      if (!r.ok) throw new Error(`stream: HTTP ${r.status}`);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let event = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
          }
          if (event === "ready") setStreamState(true);
          else if (event === "alarm" && data.length) onAlarm(JSON.parse(data.join("\n")));
        }
      }
    } catch (err) {
      if (err.name === "AbortError") return;
      console.warn("alarm stream interrupted:", err);
    }
    setStreamState(false);
    if (token) setTimeout(stream, 2000); // reconnect; after_id makes sure nothing is missed
  }

  // --- sites and tonnage ------------------------------------------------------------------

  // A schematic map: sites placed by latitude/longitude within their own bounding box (no map
  // tiles, which would need the internet), green online, red offline.
  const isStalled = (st) => st.online && st.stalled_min != null;
  const stalledText = (st) => t("stalled").replace("{n}", `${st.stalled_min}`);

  function drawMap(sites) {
    const svg = $("map");
    const placed = sites.filter((s) => s.lat !== null && s.lon !== null);
    svg.hidden = placed.length === 0;
    if (!placed.length) return;
    const ns = "http://www.w3.org/2000/svg";
    const lats = placed.map((s) => s.lat), lons = placed.map((s) => s.lon);
    const [minLat, maxLat, minLon, maxLon] = [Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons)];
    const spanLat = Math.max(maxLat - minLat, 0.05), spanLon = Math.max(maxLon - minLon, 0.05);
    const midLat = (minLat + maxLat) / 2, midLon = (minLon + maxLon) / 2;
    const x = (lon) => 260 + ((lon - midLon) / spanLon) * 440;
    const y = (lat) => 110 - ((lat - midLat) / spanLat) * 160;
    const node = (tag, attrs, text) => {
      const n = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
      if (text) n.textContent = text;
      return n;
    };
    svg.replaceChildren(node("rect", { x: 0, y: 0, width: 600, height: 220, class: "map-bg" }));
    for (const s of placed) {
      const on = s.status.online;
      const stalled = isStalled(s.status);
      const g = node("g", { class: `map-site ${stalled ? "stalled" : on ? "on" : "off"}`, "data-site": s.id });
      g.append(node("circle", { cx: x(s.lon), cy: y(s.lat), r: s.status.open_alarms ? 9 : 6 }));
      g.append(node("text", { x: x(s.lon) + 11, y: y(s.lat) + 4 }, s.name || s.id));
      g.append(node("title", {}, `${siteNames.get(s.id)} · ${stalled ? stalledText(s.status) : on ? t("yes") : t("no")}`));
      svg.append(g);
    }
  }

  async function loadSites() {
    const sites = await api("/sites");
    const select = $("search-site");
    const keep = select.value;
    select.replaceChildren(el("option", { value: "", "data-i18n": "all_sites" }, t("all_sites")));
    $("sites").replaceChildren(...sites.map((s) => {
      siteNames.set(s.id, s.name ? `${s.name}（${s.id}）` : s.id);
      select.append(el("option", { value: s.id }, siteNames.get(s.id)));
      const st = s.status;
      // A stalled gate (its heartbeat: a truck waits, nothing weighed) is not a green 在线.
      const stalled = isStalled(st);
      return el("tr", { class: stalled ? "stalled" : st.online ? "up" : "down", "data-site": s.id },
        el("td", {}, siteNames.get(s.id)),
        stalled
          ? el("td", { class: "stalled" }, el("span", { class: "dot stalled" }), stalledText(st))
          : el("td", {}, el("span", { class: `dot ${st.online ? "on" : "off"}` }), st.online ? t("yes") : t("no")),
        el("td", {}, fmtTime(st.last_seen)),
        el("td", { class: "num" }, st.verified_seq >= 0 ? `#${st.verified_seq}` : "—"),
        el("td", { class: "num" }, st.checkpoint_size ? `${st.checkpoint_size}` : "—"),
        el("td", { class: `num ${st.open_alarms ? "hot" : ""}` }, `${st.open_alarms}`));
    }));
    select.value = keep;
    drawMap(sites);
    renderAlarms();
  }

  async function loadTonnage() {
    const body = await api("/tonnage/daily");
    $("tonnage-day").textContent = body.day;
    let total = 0, trucks = 0, byHand = 0, handTrucks = 0;
    $("tonnage").replaceChildren(...body.rows.map((r) => {
      total += r.net_kg; trucks += r.trucks;
      byHand += r.by_hand_net_kg; handTrucks += r.by_hand_trucks;
      return el("tr", {},
        el("td", {}, siteNames.get(r.site) || r.site_name || r.site),
        el("td", {}, r.coal_type || t("unknown_coal")),
        el("td", { class: "num" }, tonnes(r.net_kg)),
        el("td", { class: "num" }, `${r.trucks}`),
        el("td", { class: `num by-hand ${r.by_hand_trucks ? "hot" : ""}` },
          r.by_hand_trucks ? `${tonnes(r.by_hand_net_kg)} (${r.by_hand_trucks})` : "—"));
    }));
    if (!body.rows.length) $("tonnage").append(el("tr", {}, el("td", { colspan: 5, class: "empty" }, t("none"))));
    $("tonnage-total").textContent = tonnes(total);
    $("tonnage-trucks").textContent = `${trucks}`;
    $("tonnage-by-hand").textContent = handTrucks ? `${tonnes(byHand)} (${handTrucks})` : "—";
  }

  // --- weighing search --------------------------------------------------------------------

  function searchQuery(before) {
    const form = new FormData($("search-form"));
    const q = new URLSearchParams({ limit: "50" });
    for (const name of ["plate", "site", "ticket_id"]) {
      const v = (form.get(name) || "").trim();
      if (v) q.set(name, v);
    }
    // Dates are local days; the API takes instants.
    if (form.get("from")) q.set("from", new Date(`${form.get("from")}T00:00:00`).toISOString());
    if (form.get("to")) {
      const end = new Date(`${form.get("to")}T00:00:00`);
      end.setDate(end.getDate() + 1);
      q.set("to", end.toISOString());
    }
    if (before) q.set("before", before);
    return q.toString();
  }

  async function search(event, more = false) {
    if (event) event.preventDefault();
    const page = await api(`/weighings?${searchQuery(more ? nextBefore : null)}`);
    nextBefore = page.next_before;
    const rows = page.items.map((w) => el("tr", { class: w.decision === "hold" ? "held" : "" },
      el("td", {}, fmtTime(w.ts)),
      el("td", {}, siteNames.get(w.site) || w.site),
      el("td", {}, w.plate || "—"),
      el("td", {}, t(`pass_${w.pass}`)),
      el("td", { class: "num" }, kg(w.gross_kg)),
      el("td", { class: "num" }, kg(w.tare_kg)),
      el("td", { class: "num" }, kg(w.net_kg)),
      el("td", {}, w.coal_type || "—"),
      el("td", {}, w.ticket_id || "—"),
      el("td", {}, w.decision ? t(`dec_${w.decision}`) : "—")));
    if (more) $("weighings").append(...rows);
    else $("weighings").replaceChildren(...rows);
    if (!more && !rows.length) $("weighings").append(el("tr", {}, el("td", { colspan: 10, class: "empty" }, t("none"))));
    $("more").hidden = !nextBefore;
  }

  // --- session ----------------------------------------------------------------------------

  function showLogin(message) {
    token = null;
    if (streamAbort) streamAbort.abort();
    $("app").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    setStreamState(false);
  }

  async function start(candidate) {
    token = candidate;
    try {
      await loadSites();
      await loadAlarms();
    } catch (err) {
      if (err.status === 403) showLogin(t("login_role"));
      else if (err.status !== 401) showLogin(err.message);
      return;
    }
    store.setItem("coalgate.token", token);
    $("login").hidden = true;
    $("app").hidden = false;
    loadTonnage().catch((err) => console.warn(err));
    search().catch((err) => console.warn(err));
    stream();
  }

  function init() {
    // A link may carry the token in its fragment (never sent to the server): take it and hide it.
    const m = window.location.hash.match(/token=([^&]+)/);
    if (m) {
      store.setItem("coalgate.token", decodeURIComponent(m[1]));
      history.replaceState(null, "", window.location.pathname);
    }
    $("lang").addEventListener("click", () => {
      lang = lang === "zh" ? "en" : "zh";
      store.setItem("coalgate.lang", lang);
      applyLanguage();
      if (token) { loadSites(); loadTonnage(); search(); }
    });
    $("sound").addEventListener("click", () => {
      soundOn = !soundOn;
      store.setItem("coalgate.sound", soundOn ? "on" : "off");
      applyLanguage();
      if (soundOn) beep("info");
    });
    $("logout").addEventListener("click", () => { store.removeItem("coalgate.token"); showLogin(""); });
    $("login-form").addEventListener("submit", (e) => { e.preventDefault(); start($("token").value.trim()); });
    $("show-resolved").addEventListener("change", () => loadAlarms());
    $("only-overrides").addEventListener("change", () => loadAlarms());
    $("search-form").addEventListener("submit", (e) => search(e));
    $("more").addEventListener("click", () => search(null, true));
    $("resolve-form").addEventListener("submit", submitResolve);
    $("resolve-cancel").addEventListener("click", () => $("resolve-dialog").close());
    applyLanguage();
    setInterval(() => { if (token) { loadSites().catch(() => {}); } }, 10000);
    setInterval(() => { if (token) { loadTonnage().catch(() => {}); } }, 30000);
    const saved = store.getItem("coalgate.token");
    if (saved) start(saved); else showLogin("");
  }

  init();
})();
