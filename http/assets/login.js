// The token form: keeps the token in localStorage and sends it once as ?token=, which makes the
// daemon set its HttpOnly cookie (and redirect to the address without the token).
(function () {
  "use strict";
  var KEY = "confluenceToken";
  var form = document.getElementById("login-form");
  var input = document.getElementById("login-token");
  var msg = document.getElementById("login-msg");
  var stored = null;
  try { stored = localStorage.getItem(KEY); } catch (e) { /* storage disabled */ }
  var tried = false;
  try { tried = sessionStorage.getItem("confluenceTokenTried") === "1"; } catch (e) { /* */ }
  if (stored && !tried) {
    try { sessionStorage.setItem("confluenceTokenTried", "1"); } catch (e) { /* */ }
    input.value = stored;
    form.submit();
    return;
  }
  if (tried) {
    msg.textContent = "The stored token was refused: enter the current one.";
    try { localStorage.removeItem(KEY); sessionStorage.removeItem("confluenceTokenTried"); } catch (e) { /* */ }
  }
  form.addEventListener("submit", function () {
    try { localStorage.setItem(KEY, input.value); } catch (e) { /* */ }
  });
})();
