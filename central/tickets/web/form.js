// Issuance form for a mine's sales office: Chinese by default, English on request, no CDN.
// The enterprise token is kept in this browser's localStorage and sent as a bearer header.
(function () {
  "use strict";
  const T = {
    zh: {title: "开具电子煤管票", token: "访问令牌", login: "登录", site: "装货磅房",
      plate: "车牌号", buyer: "买方（简称）", buyer_name: "买方全称（可选）", destination: "目的地",
      coal_type: "煤种", planned: "计划净重（吨）", hours: "有效时长（小时）", submit: "开票",
      logout: "退出", issued: "已开票", driver_page: "司机页面（发给司机）", lang: "English",
      bad_token: "令牌无效或已撤销", failed: "开票失败：", working: "正在开票…",
      recent: "最近开具的票", col_ticket: "票号", col_plate: "车牌", col_state: "状态",
      void: "作废", void_this: "作废此票", void_title: "作废电子煤管票",
      void_warning: "作废后此票在所有磅房失效，司机不能再凭它装车；已过磅的票不能作废。作废不可撤销。",
      void_reason: "作废原因", void_placeholder: "订单取消", void_confirm: "确认作废",
      cancel: "取消", void_need_reason: "请填写作废原因", voiding: "正在作废…",
      voided_ok: "已作废", void_failed: "作废失败：",
      state_valid: "有效", state_used: "已使用", state_voided: "已作废", state_expired: "已过期",
      state_not_yet_valid: "未生效"},
    en: {title: "Issue an e-ticket", token: "Access token", login: "Sign in",
      site: "Loading weighbridge", plate: "Plate", buyer: "Buyer (short)",
      buyer_name: "Buyer full name (optional)", destination: "Destination",
      coal_type: "Coal type", planned: "Planned net (tonnes)", hours: "Valid for (hours)",
      submit: "Issue", logout: "Sign out", issued: "Issued", driver_page: "Driver page (send to the driver)",
      lang: "中文", bad_token: "Invalid or revoked token", failed: "Not issued: ", working: "Issuing…",
      recent: "Recently issued", col_ticket: "Ticket", col_plate: "Plate", col_state: "State",
      void: "Void", void_this: "Void this ticket", void_title: "Void the e-ticket",
      void_warning: "Once voided the ticket is refused at every weighbridge and the driver cannot "
        + "load with it; a ticket already weighed cannot be voided. This cannot be undone.",
      void_reason: "Reason", void_placeholder: "order cancelled", void_confirm: "Void it",
      cancel: "Cancel", void_need_reason: "Give the reason for voiding", voiding: "Voiding…",
      voided_ok: "Voided", void_failed: "Not voided: ",
      state_valid: "Valid", state_used: "Used", state_voided: "Voided", state_expired: "Expired",
      state_not_yet_valid: "Not yet valid"},
  };
  const store = window.localStorage;
  let lang = store.getItem("coalgate.lang") === "en" ? "en" : "zh";
  let token = store.getItem("coalgate.token");
  const $ = (id) => document.getElementById(id);
  // Only a ticket nobody has weighed with yet can be voided (the API refuses the rest too).
  const VOIDABLE = ["valid", "not_yet_valid"];
  let recent = [];     // the tickets listed under the form, newest first
  let shown = null;    // the ticket shown in #result
  let voiding = null;  // the ticket the void form is open for
  // One Idempotency-Key per form fill: a second click, or a retry after a lost answer, gets the
  // ticket the first request issued instead of a second one. A new key once a ticket is issued.
  let fillKey = newKey();
  let sent = null;     // {fields, body} last sent under fillKey, resent as is on a retry

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function tr() {
    document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
    document.title = T[lang].title;
    document.querySelectorAll("[data-i18n]").forEach((el) => {
      el.textContent = T[lang][el.dataset.i18n];
    });
    $("lang").textContent = T[lang].lang;
    $("void-reason").placeholder = T[lang].void_placeholder;
    renderRecent();
    if (shown) showState(shown);
  }

  function stateBadge(el, state) {
    el.textContent = T[lang]["state_" + state] || state;
    el.className = "state " + state;
  }

  function say(text, kind) {
    const m = $("message");
    m.textContent = text;
    m.className = kind || "";
  }

  // Validation errors come as FastAPI's list [{loc, msg}]; their msg is already in words
  // (the plate's is Chinese, then English).
  function detailText(d) {
    if (Array.isArray(d)) return d.map((x) => (x && x.msg) || JSON.stringify(x)).join("; ");
    if (d && typeof d === "object") return d.message || JSON.stringify(d);
    return d;
  }

  async function api(path, options, extraHeaders) {
    const headers = {Authorization: "Bearer " + token, "Content-Type": "application/json",
      ...(extraHeaders || {})};
    const resp = await fetch("/api/v1" + path, {...(options || {}), headers});
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      const d = body && (body.detail !== undefined ? body.detail : body.message);
      const msg = detailText(d) || resp.statusText;
      const err = new Error(msg);
      err.status = resp.status;
      throw err;
    }
    return body;
  }

  async function loadSites() {
    const data = await api("/sites");
    const sites = Array.isArray(data) ? data : (data.sites || []);
    const sel = $("site");
    sel.innerHTML = "";
    sites.forEach((s) => {
      const o = document.createElement("option");
      o.value = s.id;
      o.textContent = (s.name ? s.name + " " : "") + "(" + s.id + ")";
      sel.appendChild(o);
    });
  }

  function renderRecent() {
    const rows = $("recent-rows");
    rows.textContent = "";
    recent.forEach((t) => {
      const tr = document.createElement("tr");
      tr.dataset.ticket = t.ticket_id;
      [t.ticket_id, t.plate].forEach((text, i) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (i === 0) td.className = "mono";
        tr.appendChild(td);
      });
      const state = document.createElement("td");
      const badge = document.createElement("span");
      stateBadge(badge, t.state);
      state.appendChild(badge);
      tr.appendChild(state);
      const action = document.createElement("td");
      if (VOIDABLE.includes(t.state)) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "danger small";
        b.textContent = T[lang].void;
        b.addEventListener("click", () => openVoid(t));
        action.appendChild(b);
      }
      tr.appendChild(action);
      rows.appendChild(tr);
    });
    $("recent").hidden = recent.length === 0;
  }

  async function loadRecent() {
    const data = await api("/tickets?limit=20");
    recent = data.tickets || [];
    renderRecent();
  }

  function showState(t) {
    stateBadge($("result-state"), t.state);
    $("result-void").hidden = !VOIDABLE.includes(t.state);
  }

  function showResult(t) {
    shown = t;
    $("ticket-id").textContent = t.ticket_id;
    const path = new URL(t.page_url).pathname;
    $("result-qr").src = path + "/qr.svg";
    $("driver-link").href = t.page_url;
    $("driver-url").textContent = t.page_url;
    showState(t);
    $("result").hidden = false;
  }

  // Voiding takes two steps: "void" opens this form, which asks for the reason and warns what
  // voiding does; only its confirm button calls the API.
  function openVoid(t) {
    voiding = t;
    $("void-id").textContent = t.ticket_id;
    $("void-trip").textContent = [t.plate, t.site, t.buyer + " → " + t.destination].join(" · ");
    $("void-reason").value = "";
    $("void").hidden = false;
    say("");
    window.scrollTo(0, 0);
    $("void-reason").focus();
  }

  function closeVoid() {
    voiding = null;
    $("void").hidden = true;
  }

  async function submitVoid(ev) {
    ev.preventDefault();
    if (!voiding) return;
    const reason = $("void-reason").value.trim();
    if (!reason) {
      say(T[lang].void_need_reason, "error");
      return;
    }
    const id = voiding.ticket_id;
    $("void-confirm").disabled = true;
    say(T[lang].voiding);
    try {
      const t = await api("/tickets/" + encodeURIComponent(id) + "/void",
        {method: "POST", body: JSON.stringify({reason})});
      closeVoid();
      if (shown && shown.ticket_id === id) showResult(t);
      recent = recent.map((r) => (r.ticket_id === id ? t : r));
      renderRecent();
      say(T[lang].voided_ok + " " + id, "ok");
    } catch (e) {
      say(T[lang].void_failed + e.message, "error");
    } finally {
      $("void-confirm").disabled = false;
      window.scrollTo(0, 0);
    }
  }

  async function start(candidate) {
    token = candidate;
    try {
      await loadSites();
      await loadRecent();
    } catch (e) {
      say(e.status === 401 ? T[lang].bad_token : String(e.message), "error");
      showLogin();
      return;
    }
    store.setItem("coalgate.token", token);
    $("login").hidden = true;
    $("issue").hidden = false;
    say("");
  }

  function showLogin() {
    $("login").hidden = false;
    $("issue").hidden = true;
    $("recent").hidden = true;
    $("result").hidden = true;
    closeVoid();
    recent = [];
    shown = null;
  }

  const FIELDS = ["site", "plate", "buyer", "buyer_name", "destination", "coal_type", "planned",
    "hours"];

  // After a ticket is issued: empty the trip fields (the site and validity stay, they are
  // usually the same for the next truck) and start a new fill with a new key.
  function clearForm() {
    ["plate", "buyer", "buyer_name", "destination", "coal_type", "planned"].forEach((id) => {
      $(id).value = "";
    });
    fillKey = newKey();
    sent = null;
  }

  async function submit(ev) {
    ev.preventDefault();
    const button = $("submit");
    if (button.disabled) return;  // a request of this form is on its way
    const fields = JSON.stringify(FIELDS.map((id) => $(id).value));
    let body;
    if (sent && sent.fields === fields) {
      body = sent.body;  // a retry of the very same request: same key, same body
    } else {
      if (sent) fillKey = newKey();  // the form changed after a failed try: a new request
      const hours = parseInt($("hours").value || "48", 10);
      const from = new Date();
      from.setMilliseconds(0);
      const to = new Date(from.getTime() + hours * 3600 * 1000);
      body = {
        site: $("site").value, plate: $("plate").value.trim(), buyer: $("buyer").value.trim(),
        destination: $("destination").value.trim(), coal_type: $("coal_type").value.trim(),
        planned_net_kg: Math.round(parseFloat($("planned").value) * 1000),
        valid_from: from.toISOString().replace(/\.\d+Z$/, "Z"),
        valid_to: to.toISOString().replace(/\.\d+Z$/, "Z"),
      };
      const full = $("buyer_name").value.trim();
      if (full) body.buyer_name = full;
      sent = {fields, body};
    }
    button.disabled = true;
    say(T[lang].working);
    $("result").hidden = true;
    try {
      const t = await api("/tickets", {method: "POST", body: JSON.stringify(body)},
        {"Idempotency-Key": fillKey});
      clearForm();
      showResult(t);
      recent = [t, ...recent.filter((r) => r.ticket_id !== t.ticket_id)].slice(0, 20);
      renderRecent();
      say(T[lang].issued + " " + t.ticket_id, "ok");
      window.scrollTo(0, 0);  // result and messages sit above the form
    } catch (e) {
      // A 4xx answer is a refusal: nothing was issued, so the next try is a new request. Without
      // an answer (network, 5xx) the ticket may exist: the retry resends the same key and body.
      if (e.status >= 400 && e.status < 500) {
        fillKey = newKey();
        sent = null;
      }
      say(T[lang].failed + e.message, "error");
      window.scrollTo(0, 0);
    } finally {
      button.disabled = false;
    }
  }

  $("lang").addEventListener("click", () => {
    lang = lang === "en" ? "zh" : "en";
    store.setItem("coalgate.lang", lang);
    tr();
  });
  $("login-btn").addEventListener("click", () => start($("token").value.trim()));
  $("logout").addEventListener("click", () => { store.removeItem("coalgate.token"); token = null; showLogin(); });
  $("issue").addEventListener("submit", submit);
  $("void").addEventListener("submit", submitVoid);
  $("void-cancel").addEventListener("click", () => { closeVoid(); say(""); });
  $("result-void").addEventListener("click", () => { if (shown) openVoid(shown); });
  const m = window.location.hash.match(/token=([^&]+)/);
  if (m) {
    token = decodeURIComponent(m[1]);
    history.replaceState(null, "", window.location.pathname);
  }
  tr();
  if (token) start(token); else showLogin();
})();
