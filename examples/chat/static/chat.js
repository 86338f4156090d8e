// The chat's behaviour beyond LiveView: posts made while offline are kept in an outbox,
// shown, and sent once the connection is back (again after a disconnect that cuts a send
// short: each carries an id, and the server drops a repeat); the message list follows new
// messages; the message box empties after each post.
(() => {
  const outbox = [];  // {cid, text, state: "waiting" | "sending"}
  let composer = null;  // the Composer hook while it is mounted
  const root = () => document.querySelector("[data-phx-main]");
  const connected = () => Boolean(root()?.classList.contains("phx-connected"));
  const WHY = {
    waiting: "Not sent yet: offline. It will be sent when the connection is back.",
    sending: "Sending…",
  };

  function randomId() {  // 32 hex digits; getRandomValues works on plain http too
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  }

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
      if (item.state === "waiting") {
        li.append(button("Discard", () => { outbox.splice(outbox.indexOf(item), 1); draw(); }));
      }
      return li;
    }));
  }

  function flush() {
    if (!connected()) {
      // A send cut short by a disconnect goes again on reconnect; its id keeps it single.
      for (const item of outbox) item.state = "waiting";
    } else if (composer) {
      for (const item of outbox.filter((each) => each.state === "waiting")) {
        item.state = "sending";
        composer.pushEvent("send", {text: item.text, cid: item.cid}, () => {
          const index = outbox.indexOf(item);
          if (index >= 0) outbox.splice(index, 1);
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
          if (text) outbox.push({cid: randomId(), text, state: "waiting"});
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
