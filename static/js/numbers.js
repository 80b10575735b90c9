/* Number pages: the add form shows the chosen provider's credentials; a number's page follows its
 * QR codes and connection state live over /ws/numbers/<id>/ and catches up by cursor after any
 * reconnect (GET /events/?after=), so a QR or "connected" that arrives while the socket is down is
 * never missed. Plain JavaScript, no build step. */
(function () {
  "use strict";

  // --- the add form ------------------------------------------------------------------------------
  function providerFieldsFollow(form) {
    var select = form.querySelector("select[name=provider]");
    if (!select) return;
    function show() {
      form.querySelectorAll("[data-provider-group]").forEach(function (group) {
        group.hidden = group.getAttribute("data-provider-group") !== select.value;
      });
      form.querySelectorAll("[data-provider-note]").forEach(function (note) {
        note.hidden = note.getAttribute("data-provider-note") !== select.value;
      });
    }
    select.addEventListener("change", show);
    show();
  }

  // --- a number's page ---------------------------------------------------------------------------
  function NumberLive(root, config) {
    this.root = root;
    this.config = config;
    this.cursor = config.cursor;
    this.state = config.state;
    this.retryDelay = 1000;
    this.socket = null;
    this.applied = {};
    this.el = function (name) { return root.querySelector("[data-testid=" + name + "]"); };
  }

  NumberLive.prototype.start = function () {
    var self = this;
    var form = this.el("connect-form");
    if (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        self.connectAsk(form);
      });
    }
    if (this.state === "waiting_for_qr_scan") this.qrFetch();
    this.socketOpen();
  };

  NumberLive.prototype.connectAsk = function (form) {
    var button = form.querySelector("button");
    button.disabled = true;
    this.reasonShow("");
    this.qrPanelShow(this.config.strings.qr_waiting);
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
      })
      .catch(function () { form.submit(); })  // let the server answer the plain way
      .then(function () { button.disabled = false; });
  };

  NumberLive.prototype.socketOpen = function () {
    var self = this;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + this.config.socket_path);
    this.socket = socket;
    socket.addEventListener("message", function (message) {
      var frame;
      try { frame = JSON.parse(message.data); } catch (error) { return; }
      if (frame.type === "ready") {
        self.retryDelay = 1000;
        self.liveStatus("");
        self.catchUp();
      } else if (frame.type === "ping") {
        socket.send(JSON.stringify({ type: "pong" }));
      } else if (frame.type === "event") {
        self.apply(frame.event);
      }
    });
    socket.addEventListener("close", function (event) {
      if (event.code === 4401 || event.code === 4403) return;  // signed out or not ours: no retry
      self.liveStatus(self.config.strings.reconnecting);
      window.setTimeout(function () { self.socketOpen(); }, self.retryDelay);
      self.retryDelay = Math.min(self.retryDelay * 2, 15000);
    });
  };

  NumberLive.prototype.catchUp = function () {
    var self = this;
    var url = this.config.events_url + "?after=" + encodeURIComponent(this.cursor);
    fetch(url, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (!body) return;
        body.events.forEach(function (event) { self.apply(event); });
        self.cursor = Math.max(self.cursor, body.cursor);
        if (body.has_more) self.catchUp();
      });
  };

  NumberLive.prototype.apply = function (event) {
    // A pushed event and the same event from catch-up carry one cursor: apply it once. Events up
    // to the render-time cursor are already in the page.
    if (event.cursor <= this.config.cursor || this.applied[event.cursor]) return;
    this.applied[event.cursor] = true;
    this.cursor = Math.max(this.cursor, event.cursor);
    if (event.number !== this.config.number) return;
    if (event.type === "number.qr") this.qrShow(event.data);
    if (event.type === "number.state") this.stateShow(event.data);
  };

  NumberLive.prototype.qrPanelShow = function (note) {
    this.el("qr-panel").hidden = false;
    this.el("qr-note").textContent = note || "";
    this.el("connected-note").hidden = true;
  };

  NumberLive.prototype.qrShow = function (data) {
    this.stateShow({ state: "waiting_for_qr_scan", reason: "", local: true });
    if (data.has_image) {
      this.qrFetch();
    } else {
      this.qrPanelShow("");
      this.pairingShow(data.pairing_code || "");
    }
  };

  NumberLive.prototype.qrFetch = function () {
    var self = this;
    fetch(this.config.qr_url, { credentials: "same-origin" })
      .then(function (response) { return response.json().then(function (body) { return [response.ok, body]; }); })
      .then(function (result) {
        if (self.state === "connected") return;
        var image = self.el("number-qr");
        if (!result[0]) {
          image.hidden = true;
          self.qrPanelShow(self.config.strings.qr_expired);
          return;
        }
        self.qrPanelShow("");
        if (result[1].qr_image && result[1].qr_image.indexOf("data:image/") === 0) {
          image.src = result[1].qr_image;
          image.hidden = false;
        }
        self.pairingShow(result[1].pairing_code || "");
      });
  };

  NumberLive.prototype.pairingShow = function (code) {
    this.textShow("number-pairing-code", code);
  };

  NumberLive.prototype.textShow = function (name, text) {
    // Shown while it has text; textContent keeps provider-supplied text inert.
    var element = this.el(name);
    element.textContent = text;
    element.hidden = !text;
  };

  NumberLive.prototype.stateShow = function (data) {
    var badge = this.el("number-state");
    var state = data.state || this.state;
    this.state = state;
    badge.textContent = this.config.state_labels[state] || state;
    badge.className = "state state-" + state;
    badge.setAttribute("data-state", state);
    if (data.phone) this.el("number-phone").textContent = data.phone;
    // Any state the provider reports means it was heard from now (number_connection_update).
    if (!data.local) this.el("number-last-seen").textContent = this.config.strings.just_now;
    var logout = this.el("logout-form");
    if (logout) logout.hidden = ["not_provisioned", "logged_out", "banned"].indexOf(state) !== -1;
    this.reasonShow(state === "connected" ? "" : data.reason || "");
    if (state === "connected") {
      this.el("qr-panel").hidden = true;
      var note = this.el("connected-note");
      note.textContent = this.config.strings.connected;
      note.hidden = false;
      var form = this.el("connect-form");
      if (form) form.hidden = true;
    }
  };

  NumberLive.prototype.reasonShow = function (reason) {
    this.textShow("number-reason", reason);
  };

  NumberLive.prototype.liveStatus = function (text) {
    this.textShow("live-status", text);
  };

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("[data-testid=number-add-form]");
    if (form) providerFieldsFollow(form);
    var root = document.querySelector("[data-number-live]");
    var config = document.getElementById("number-live");
    if (root && config) new NumberLive(root, JSON.parse(config.textContent)).start();
  });
})();
