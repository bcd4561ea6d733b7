"use strict";
// Console login: JSON POST to /api/login; the gate sets an HttpOnly session cookie.
const T = {
  zh: { title: "过磅台登录", name: "账号", password: "密码", submit: "登录",
        failed: "账号或密码错误", throttled: "登录失败次数过多，请稍后再试" },
  en: { title: "Weighbridge login", name: "Account", password: "Password", submit: "Log in",
        failed: "Wrong account name or password", throttled: "Too many failed logins; try later" },
};
const asked = new URLSearchParams(location.search).get("lang");
let lang = (asked || document.documentElement.dataset.lang) === "en" ? "en" : "zh";
const $ = (id) => document.getElementById(id);

function applyLang() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = "coalgate · " + T[lang].title;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = T[lang][el.dataset.i18n]; });
  $("lang").textContent = lang === "zh" ? "English" : "中文";
}

$("lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; applyLang(); });
$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  const r = await fetch("/api/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: f.name.value.trim(), password: f.password.value }),
  });
  if (r.ok) { location.href = "/" + (lang === "en" ? "?lang=en" : ""); return; }
  $("login-result").className = "err";
  $("login-result").textContent = r.status === 429 ? T[lang].throttled : T[lang].failed;
  f.password.value = "";
});
applyLang();
document.documentElement.dataset.ready = "1";
