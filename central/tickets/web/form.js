// Issuance form for a mine's sales office: Chinese by default, English on request, no CDN.
// The enterprise token is kept in this browser's localStorage and sent as a bearer header.
(function () {
  "use strict";
  const T = {
    zh: {title: "开具电子煤管票", token: "访问令牌", login: "登录", site: "装货磅房",
      plate: "车牌号", buyer: "买方（简称）", buyer_name: "买方全称（可选）", destination: "目的地",
      coal_type: "煤种", planned: "计划净重（吨）", hours: "有效时长（小时）", submit: "开票",
      logout: "退出", issued: "已开票", driver_page: "司机页面（发给司机）", lang: "English",
      bad_token: "令牌无效或已撤销", failed: "开票失败：", working: "正在开票…"},
    en: {title: "Issue an e-ticket", token: "Access token", login: "Sign in",
      site: "Loading weighbridge", plate: "Plate", buyer: "Buyer (short)",
      buyer_name: "Buyer full name (optional)", destination: "Destination",
      coal_type: "Coal type", planned: "Planned net (tonnes)", hours: "Valid for (hours)",
      submit: "Issue", logout: "Sign out", issued: "Issued", driver_page: "Driver page (send to the driver)",
      lang: "中文", bad_token: "Invalid or revoked token", failed: "Not issued: ", working: "Issuing…"},
  };
  const store = window.localStorage;
  let lang = store.getItem("coalgate.lang") === "en" ? "en" : "zh";
  let token = store.getItem("coalgate.token");
  const $ = (id) => document.getElementById(id);

  function tr() {
    document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
    document.title = T[lang].title;
    document.querySelectorAll("[data-i18n]").forEach((el) => {
      el.textContent = T[lang][el.dataset.i18n];
    });
    $("lang").textContent = T[lang].lang;
  }

  function say(text, kind) {
    const m = $("message");
    m.textContent = text;
    m.className = kind || "";
  }

  async function api(path, options) {
    const headers = {Authorization: "Bearer " + token, "Content-Type": "application/json"};
    const resp = await fetch("/api/v1" + path, {...(options || {}), headers});
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      const d = body && (body.detail !== undefined ? body.detail : body.message);
      const msg = d && typeof d === "object" ? (d.message || JSON.stringify(d)) : (d || resp.statusText);
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

  async function start(candidate) {
    token = candidate;
    try {
      await loadSites();
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
  }

  async function submit(ev) {
    ev.preventDefault();
    const hours = parseInt($("hours").value || "48", 10);
    const from = new Date();
    from.setMilliseconds(0);
    const to = new Date(from.getTime() + hours * 3600 * 1000);
    const body = {
      site: $("site").value, plate: $("plate").value.trim(), buyer: $("buyer").value.trim(),
      destination: $("destination").value.trim(), coal_type: $("coal_type").value.trim(),
      planned_net_kg: Math.round(parseFloat($("planned").value) * 1000),
      valid_from: from.toISOString().replace(/\.\d+Z$/, "Z"),
      valid_to: to.toISOString().replace(/\.\d+Z$/, "Z"),
    };
    const full = $("buyer_name").value.trim();
    if (full) body.buyer_name = full;
    say(T[lang].working);
    $("result").hidden = true;
    try {
      const t = await api("/tickets", {method: "POST", body: JSON.stringify(body)});
      $("ticket-id").textContent = t.ticket_id;
      const path = new URL(t.page_url).pathname;
      $("result-qr").src = path + "/qr.svg";
      $("driver-link").href = t.page_url;
      $("driver-url").textContent = t.page_url;
      $("result").hidden = false;
      say(T[lang].issued + " " + t.ticket_id, "ok");
      window.scrollTo(0, 0);  // result and messages sit above the form
    } catch (e) {
      say(T[lang].failed + e.message, "error");
      window.scrollTo(0, 0);
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
  const m = window.location.hash.match(/token=([^&]+)/);
  if (m) {
    token = decodeURIComponent(m[1]);
    history.replaceState(null, "", window.location.pathname);
  }
  tr();
  if (token) start(token); else showLogin();
})();
