"use strict";
// Operator console: live state over SSE, overrides with a typed reason, today's weighings.
const T = {
  zh: {
    title: "过磅台", offline: "离线", online: "在线", weight: "实时重量", stable: "稳定",
    unstable: "不稳定", io: "道闸与传感器", ir_entry: "入口红外", ir_exit: "出口红外",
    loop_entry: "入口地感", loop_exit: "出口地感", barrier_up: "道闸已抬起",
    barrier_down: "道闸已落下", vehicle: "车辆", plate: "车牌", ticket: "煤票", txn: "业务号",
    decision: "判定", exceptions: "异常处理（须填写原因）", action: "操作",
    manual_plate: "手工录入车牌", manual_barrier_up: "手动抬杆", void: "作废业务",
    operator: "司磅员", reason: "原因", submit: "提交", scan: "扫码（键盘扫码枪）",
    today: "今日过磅", time: "时间", pass: "过磅", gross: "毛重", tare: "皮重", net: "净重",
    slip: "磅单", print: "打印", release: "放行", hold: "扣留", done: "已记录",
    states: { idle: "空闲", entering: "上磅中", on_platform: "在磅上", identify: "识别中",
              held: "扣留", released: "已放行", leaving: "下磅中", recovering: "恢复中" },
    passes: { tare: "皮重", gross: "毛重", one_pass: "一次过磅" },
    codes: { not_fully_on_platform: "车辆未完全上磅", unstable: "长时间不稳定",
             weight_jump: "重量异常跳变（疑似遥控作弊）", second_vehicle: "磅上有第二辆车",
             plate_mismatch: "车牌不符", no_ticket: "无煤票", invalid_ticket: "煤票无效",
             net_mismatch: "净重与煤票不符", overload: "超载", tare_out_of_band: "皮重异常",
             barrier_forced: "强行冲杆", escape: "无票逃逸", device_offline: "设备离线",
             zero_drift: "零点漂移", plate_unread: "车牌未识别" },
    plate_prompt: "车牌未能可靠识别：请核对车辆后录入车牌（须填写原因）",
    candidate: "识别候选", use_candidate: "填入车牌",
    devices: { scale: "仪表", io: "IO 模块" },
    login: "登录", logout: "退出", open_lane: "空道抬杆（主管）",
    roles: { operator: "司磅员", supervisor: "主管" },
    logged_out: "登录已过期，请重新登录",
  },
  en: {
    title: "Weighbridge", offline: "offline", online: "online", weight: "Live weight",
    stable: "stable", unstable: "unstable", io: "Barrier and sensors", ir_entry: "Entry IR beam",
    ir_exit: "Exit IR beam", loop_entry: "Entry loop", loop_exit: "Exit loop",
    barrier_up: "Barrier up", barrier_down: "Barrier down", vehicle: "Vehicle", plate: "Plate",
    ticket: "Ticket", txn: "Transaction", decision: "Decision",
    exceptions: "Exceptions (a reason is required)", action: "Action",
    manual_plate: "Enter plate manually", manual_barrier_up: "Raise barrier manually",
    void: "Void transaction", operator: "Operator", reason: "Reason", submit: "Submit",
    scan: "Scan (keyboard scanner)", today: "Today's weighings", time: "Time", pass: "Pass",
    gross: "Gross", tare: "Tare", net: "Net", slip: "Slip", print: "Print", release: "Release",
    hold: "Hold", done: "Recorded",
    states: { idle: "idle", entering: "driving on", on_platform: "on platform",
              identify: "identifying", held: "held", released: "released", leaving: "leaving",
              recovering: "recovering" },
    passes: { tare: "tare", gross: "gross", one_pass: "one-pass" },
    codes: { not_fully_on_platform: "not fully on the platform", unstable: "unstable too long",
             weight_jump: "implausible weight jump (jammer?)", second_vehicle: "second vehicle",
             plate_mismatch: "plate mismatch", no_ticket: "no ticket",
             invalid_ticket: "invalid ticket", net_mismatch: "net differs from ticket",
             overload: "overload", tare_out_of_band: "tare out of band",
             barrier_forced: "barrier forced", escape: "escape", device_offline: "device offline",
             zero_drift: "zero drift", plate_unread: "plate not read" },
    plate_prompt: "The plate was not read reliably: check the truck and enter its plate (with a reason)",
    candidate: "Reader's candidate", use_candidate: "Use it",
    devices: { scale: "indicator", io: "IO module" },
    login: "Log in", logout: "Log out", open_lane: "Open lane (supervisor)",
    roles: { operator: "operator", supervisor: "supervisor" },
    logged_out: "Your session has expired; log in again",
  },
};
const asked = new URLSearchParams(location.search).get("lang");
let lang = (asked || document.documentElement.dataset.lang) === "en" ? "en" : "zh";
let last = null;
let me = { name: null };  // the logged-in account: name, role, csrf (anti-CSRF token)
const $ = (id) => document.getElementById(id);
const kg = (v) => (v === null || v === undefined ? "—" : v.toLocaleString("en-US") + " kg");

function applyLang() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = "coalgate · " + T[lang].title;
  document.querySelectorAll("[data-i18n]").forEach((el) => {
    const v = T[lang][el.dataset.i18n];
    if (typeof v === "string") el.textContent = v;
  });
  $("lang").textContent = lang === "zh" ? "English" : "中文";
  showUser();
  if (last) render(last);
  loadRows();
}

function render(s) {
  last = s;
  const t = T[lang];
  $("site").textContent = s.site_name || s.site;
  $("weight").textContent = kg(s.weight_kg);
  $("stable").textContent = s.stable ? t.stable : t.unstable;
  $("stable").className = "pill " + (s.stable ? "on" : "off");
  $("state").textContent = t.states[s.state] || s.state;
  for (const [k, v] of Object.entries(s.io || {})) {
    const el = $("io-" + k);
    if (el) el.className = v ? "lit" : "";
  }
  $("devices").innerHTML = "";
  for (const [name, up] of Object.entries(s.devices || {})) {
    const span = document.createElement("span");
    span.className = "pill " + (up ? "on" : "off");
    span.textContent = (t.devices[name] || name) + " " + (up ? t.online : t.offline);
    $("devices").appendChild(span);
  }
  $("plate").textContent = s.plate ? s.plate + (s.plate_source ? " (" + s.plate_source + ")" : "") : "—";
  $("ticket").textContent = s.ticket ? s.ticket + " · " + s.ticket_result : (s.ticket_result || "—");
  $("txn").textContent = s.txn || "—";
  // Below the confidence threshold (or nothing read in time) the operator types the plate.
  const c = s.plate_candidate;
  $("plate-prompt").hidden = !s.plate_prompt;
  $("plate-candidate").textContent = c ? c.plate + " (" + Math.round(c.conf_pm / 10) + "%)" : "—";
  $("use-candidate").hidden = !c;
  if (c && c.snapshot_sha256) {
    $("plate-snap").src = "/api/snapshots/" + c.snapshot_sha256 + ".jpg";
    $("plate-snap").hidden = false;
  } else {
    $("plate-snap").hidden = true;
  }
  const d = s.decision;
  $("decision").textContent = d ? (d.decision === "release" ? t.release : t.hold) : "—";
  $("decision").className = "big " + (d ? d.decision : "");
  $("reasons").innerHTML = "";
  const codes = d ? d.reasons : [];
  for (const c of new Set([...(codes || []), ...(s.flags || [])])) {
    const li = document.createElement("li");
    li.textContent = t.codes[c] || c;
    $("reasons").appendChild(li);
  }
}

function showUser() {
  const t = T[lang];
  const inside = !!me.name;
  $("login-link").hidden = inside;
  $("logout").hidden = !inside;
  $("user").hidden = !inside;
  $("user").textContent = inside ? me.name + " · " + (t.roles[me.role] || me.role) : "";
  $("actions").hidden = !inside;
  document.querySelectorAll("option.supervisor").forEach((o) => {
    o.hidden = me.role !== "supervisor";
    o.disabled = me.role !== "supervisor";
  });
}

async function loadSession() {
  const r = await fetch("/api/session", { cache: "no-store" });
  me = r.ok ? await r.json() : { name: null };
  if (!me.name && me.reads_need_login) { location.href = "/login"; return; }
  showUser();
}

// Every state-changing request: JSON with the session's anti-CSRF token.
async function post(path, body) {
  const r = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": me.csrf || "" },
    body: JSON.stringify(body),
  });
  if (r.status === 401) {
    me = { name: null };
    showUser();
    $("override-result").className = "err";
    $("override-result").textContent = T[lang].logged_out;
  }
  return r;
}

async function loadRows() {
  const r = await fetch("/api/transactions");
  if (!r.ok) return;
  const rows = await r.json();
  const t = T[lang];
  const body = $("rows");
  body.innerHTML = "";
  for (const row of rows) {
    const tr = document.createElement("tr");
    const cells = [row.time, row.txn, row.plate, t.passes[row.pass] || row.pass, kg(row.gross_kg),
                   kg(row.tare_kg), kg(row.net_kg),
                   row.decision === "release" ? t.release : t.hold + " " +
                     (row.reasons || []).map((c) => t.codes[c] || c).join("、")];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c === null || c === undefined ? "—" : c;
      tr.appendChild(td);
    }
    const td = document.createElement("td");
    const a = document.createElement("a");
    a.href = "/slip/" + row.seq;
    a.target = "_blank";
    a.textContent = t.print;
    td.appendChild(a);
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

function connect() {
  const es = new EventSource("/api/events");
  let lastTxn = null;
  es.addEventListener("state", (e) => {
    const s = JSON.parse(e.data);
    render(s);
    const key = JSON.stringify(s.decision);
    if (key !== lastTxn) { lastTxn = key; loadRows(); }
  });
  es.onopen = () => { $("conn").className = "pill on"; $("conn").textContent = T[lang].online; };
  es.onerror = () => { $("conn").className = "pill off"; $("conn").textContent = T[lang].offline; };
}

$("lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; applyLang(); });
$("override").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const body = Object.fromEntries([...f.entries()].filter(([, v]) => v !== ""));
  const r = await post("/api/override", body);
  if (r.status === 401) return;
  const j = await r.json();
  $("override-result").textContent = r.ok ? T[lang].done
    : (typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail));
  $("override-result").className = r.ok ? "ok" : "err";
  if (r.ok) loadRows();
});
$("use-candidate").addEventListener("click", () => {
  const f = $("override");
  f.elements.action.value = "manual_plate";
  f.elements.plate.value = last && last.plate_candidate ? last.plate_candidate.plate : "";
  f.elements.reason.focus();
});
$("scan").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = e.target.elements.text;
  await post("/api/scan", { text: input.value });
  input.value = "";
});
setInterval(() => {
  const img = $("snap");
  img.style.visibility = "visible";
  img.src = "/api/snapshot.jpg?t=" + Date.now();
}, 5000);
$("logout").addEventListener("click", async () => {
  await post("/api/logout", {});
  location.href = "/login" + (lang === "en" ? "?lang=en" : "");
});
applyLang();
loadSession().then(connect);
