/* The dashboard's reindex button: starts the reindex through the JSON API and shows its
   progress until it has finished. Without this script the form posts to /admin/reindex and
   the page shows the job as it was at that moment. No inline script: the page's CSP forbids it. */
(function () {
  "use strict";

  var POLL_MS = 1000;

  function when(iso) {
    if (!iso) { return "–"; }
    return iso.replace("T", " ").replace(/\+00:00$/, " UTC");
  }

  function statusText(job) {
    if (job.state === "queued") { return "Reindex " + job.id + " is queued."; }
    if (job.state === "running" && !job.progress.total) {
      return "Reindex " + job.id + " is running: reading the articles.";
    }
    if (job.state === "running" && !job.progress.done) {
      return "Reindex " + job.id + " is running: " + job.progress.total +
        " articles read, loading the model or embedding.";
    }
    if (job.state === "running") {
      return "Reindex " + job.id + " is running: " + job.progress.done + " of " +
        job.progress.total + " articles embedded.";
    }
    if (job.state === "succeeded") {
      return "Reindex " + job.id + " finished at " + when(job.finished) + ": build " +
        job.result.version + " is current.";
    }
    return "Reindex " + job.id + " failed at " + when(job.finished) +
      "; the current build is unchanged.";
  }

  function setText(id, text) {
    var element = document.getElementById(id);
    if (element) { element.textContent = text; }
  }

  function show(job) {
    var active = job.state === "queued" || job.state === "running";
    var box = document.getElementById("reindex-job");
    var progress = document.getElementById("job-progress");
    box.setAttribute("data-state", job.state);
    setText("job-status", statusText(job));
    progress.hidden = !active;
    progress.max = job.progress.total || 1;
    progress.value = job.progress.done;
    document.getElementById("reindex-button").disabled = active;
    var result = job.result;
    document.getElementById("job-result").hidden = !result;
    var list = document.getElementById("job-invalid-list");
    while (list.firstChild) { list.removeChild(list.firstChild); }
    if (result) {
      setText("job-articles", String(result.articles));
      setText("job-embedded", String(result.embedded));
      setText("job-reused", String(result.reused));
      setText("job-changes", result.added.length + " · " + result.changed.length + " · " +
        result.removed.length);
      setText("job-seconds", result.seconds.toFixed(1));
      setText("index-version", result.version);
      setText("index-articles", String(result.articles));
      setText("index-built", when(job.finished));
      result.invalid.forEach(function (article) {
        var item = document.createElement("li");
        var code = document.createElement("code");
        code.textContent = article.message;
        item.appendChild(code);
        list.appendChild(item);
      });
    }
    document.getElementById("job-invalid").hidden = !(result && result.invalid.length);
    var error = document.getElementById("job-error");
    error.hidden = !job.error;
    error.textContent = job.error || "";
    return active;
  }

  function problem(text) {
    var error = document.getElementById("job-error");
    error.hidden = false;
    error.textContent = text;
  }

  function answer(response) {
    return response.json().then(function (body) {
      return { status: response.status, body: body };
    });
  }

  function poll(api) {
    fetch(api, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(answer)
      .then(function (reply) {
        if (reply.status !== 200) { problem(reply.body.error.message); return; }
        if (show(reply.body)) { window.setTimeout(function () { poll(api); }, POLL_MS); }
      })
      .catch(function () {
        window.setTimeout(function () { poll(api); }, POLL_MS * 3);
      });
  }

  function start(event) {
    var form = event.currentTarget;
    var api = form.getAttribute("data-api");
    event.preventDefault();
    document.getElementById("reindex-button").disabled = true;
    fetch(api, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-CSRF-Token": form.elements.csrf_token.value
      },
      body: JSON.stringify({ strict: form.elements.strict.checked })
    })
      .then(answer)
      .then(function (reply) {
        var job = reply.status === 409 ? reply.body.job : reply.body;
        if (reply.status !== 202 && reply.status !== 409) {
          problem(reply.body.error.message);
          document.getElementById("reindex-button").disabled = false;
          return;
        }
        if (show(job)) { window.setTimeout(function () { poll(api); }, POLL_MS); }
      })
      .catch(function () {
        problem("The reindex could not be started: the server did not answer.");
        document.getElementById("reindex-button").disabled = false;
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("reindex-form");
    if (!form) { return; }
    form.addEventListener("submit", start);
    var state = document.getElementById("reindex-job").getAttribute("data-state");
    if (state === "queued" || state === "running") { poll(form.getAttribute("data-api")); }
  });
}());
