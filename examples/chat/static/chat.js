// The chat's behaviour beyond LiveView: posts made while offline are kept in an outbox,
// shown, and sent once the connection is back (or marked failed, with Retry); the message
// list follows new messages; the message box empties after each post.
(() => {
  const outbox = [];  // {text, state: "waiting" | "sending" | "failed"}
  let composer = null;  // the Composer hook while it is mounted
  const root = () => document.querySelector("[data-phx-main]");
  const connected = () => Boolean(root()?.classList.contains("phx-connected"));
  const WHY = {
    waiting: "Not sent yet: offline. It will be sent when the connection is back.",
    sending: "Sending…",
    failed: "Not sent: the server did not answer.",
  };

  function button(label, onClick) {
    const element = document.createElement("button");
    element.type = "button";
    element.textContent = label;
    element.addEventListener("click", onClick);
    return element;
  }

  function draw() {
    const list = document.getElementById("outbox");
    if (!list) return;
    list.replaceChildren(...outbox.map((item) => {
      const li = document.createElement("li");
      li.className = "pending";
      li.dataset.state = item.state;
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = item.text;
      const why = document.createElement("span");
      why.className = "why";
      why.textContent = WHY[item.state];
      li.append(text, why);
      if (item.state === "failed") {
        li.append(button("Retry", () => { item.state = "waiting"; flush(); }));
      }
      if (item.state !== "sending") {
        li.append(button("Discard", () => { outbox.splice(outbox.indexOf(item), 1); draw(); }));
      }
      return li;
    }));
  }

  function flush() {
    if (composer && connected()) {
      for (const item of outbox.filter((each) => each.state === "waiting")) {
        item.state = "sending";
        const timer = setTimeout(() => { item.state = "failed"; draw(); }, 10000);
        composer.pushEvent("send", {text: item.text}, () => {
          clearTimeout(timer);
          outbox.splice(outbox.indexOf(item), 1);
          draw();
        });
      }
    }
    draw();
  }

  window.Hooks = window.Hooks || {};
  window.Hooks.Composer = {
    mounted() {
      composer = this;
      this.el.addEventListener("submit", (event) => {
        const input = this.el.querySelector("#text-input");
        if (!connected()) {
          // LiveView would drop this post: keep it instead, and say so.
          event.preventDefault();
          event.stopImmediatePropagation();
          const text = input.value.trim();
          if (text) outbox.push({text, state: "waiting"});
          input.value = "";
          draw();
          return;
        }
        // LiveView keeps a focused input's value: empty it once the post is on its way.
        setTimeout(() => this.el.reset(), 0);
      }, true);
      flush();
    },
    reconnected() { flush(); },
    destroyed() { if (composer === this) composer = null; },
  };
  window.Hooks.Messages = {
    mounted() { this.el.scrollTop = this.el.scrollHeight; },
    updated() { this.el.scrollTop = this.el.scrollHeight; },
  };

  document.addEventListener("DOMContentLoaded", () => {
    const element = root();
    if (element) {
      new MutationObserver(flush).observe(element, {attributes: true, attributeFilter: ["class"]});
    }
  });
})();
