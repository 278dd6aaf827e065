// The FAQ page's progressive enhancements; every page works without this file.
// 1. Results as you type: from a few characters, debounced, the server renders the results
//    fragment (/suche/fragment?q=) and it replaces the results; a live region says the count.
// 2. "Did this help?": the vote is sent with fetch and the answer replaces the form.
// 3. A callback form sent back with mistakes puts the focus on the list of mistakes.
(function () {
  "use strict";

  var DEBOUNCE_MS = 300;

  function parseFragment(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content;
  }

  // The language switch keeps the query shown, as it does for a page loaded with ?q=.
  function keepQueryInSwitch(query) {
    var link = document.querySelector("a.switch");
    if (!link) {
      return;
    }
    var url = new URL(link.href, window.location.href);
    if (query) {
      url.searchParams.set("q", query);
    } else {
      url.searchParams.delete("q");
    }
    link.href = url.pathname + url.search;
  }

  function liveSearch(form) {
    var input = form.querySelector("input[type=search]");
    var results = document.getElementById("results");
    var status = document.getElementById("results-status");
    var hint = document.getElementById("q-hint");
    if (!input || !results || !status) {
      return;
    }
    var minChars = parseInt(form.getAttribute("data-min-chars"), 10) || 3;
    var endpoint = form.getAttribute("data-live");
    var timer = null;
    var controller = null;
    var shown = input.value.trim();
    if (hint) {
      hint.hidden = false;
    }

    function show(html, query) {
      var content = parseFragment(html);
      var block = content.querySelector("[data-status]");
      results.replaceChildren(content);
      status.textContent = block ? block.getAttribute("data-status") : "";
      results.setAttribute("aria-busy", "false");
      shown = query;
      var address = query ? "?q=" + encodeURIComponent(query) : window.location.pathname;
      window.history.replaceState(null, "", address);
      keepQueryInSwitch(query);
    }

    function fetchResults(query) {
      if (controller) {
        controller.abort();
      }
      controller = new AbortController();
      results.setAttribute("aria-busy", "true");
      fetch(endpoint + "?q=" + encodeURIComponent(query), {
        headers: { "Accept": "text/html" },
        credentials: "same-origin",
        signal: controller.signal
      }).then(function (response) {
        return response.text().then(function (html) {
          if (input.value.trim() === query) {
            show(html, query);
          }
        });
      }).catch(function (error) {
        if (error.name !== "AbortError") {
          results.setAttribute("aria-busy", "false");
        }
      });
    }

    input.addEventListener("input", function () {
      window.clearTimeout(timer);
      var query = input.value.trim();
      timer = window.setTimeout(function () {
        if (query === shown) {
          return;
        }
        if (query.length >= minChars) {
          fetchResults(query);
        } else if (query.length === 0) {
          if (controller) {
            controller.abort();
          }
          show("", "");
        }
      }, DEBOUNCE_MS);
    });
  }

  function voteForm(form) {
    var section = form.closest("section") || form;
    var busy = form.querySelector(".vote-busy");
    form.addEventListener("submit", function (event) {
      var submitter = event.submitter;
      if (!submitter || !window.fetch) {
        return;
      }
      event.preventDefault();
      var data = new FormData(form, submitter);
      data.append("partial", "1");
      form.querySelectorAll("button").forEach(function (button) {
        button.disabled = true;
      });
      if (busy) {
        busy.hidden = false;
      }
      fetch(form.action, { method: "POST", body: data, credentials: "same-origin" })
        .then(function (response) {
          return response.text();
        })
        .then(function (html) {
          section.replaceWith(parseFragment(html));
          var outcome = document.getElementById("vote-outcome");
          if (outcome) {
            outcome.focus();
          }
        })
        .catch(function () {
          // Fall back to the plain form post, which needs the answer as a field.
          var answer = document.createElement("input");
          answer.type = "hidden";
          answer.name = submitter.name;
          answer.value = submitter.value;
          form.appendChild(answer);
          form.submit();
        });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-live]").forEach(liveSearch);
    document.querySelectorAll("form[data-vote]").forEach(voteForm);
    // A form sent back with mistakes: start at the list of what to correct.
    var summary = document.getElementById("error-summary");
    if (summary) {
      summary.focus();
    }
  });
})();
