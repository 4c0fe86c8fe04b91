// dyad serve: one RTCPeerConnection to the avatar; captions and state over the "events" data channel.
"use strict";

const $ = (id) => document.getElementById(id);
const dyad = (window.dyad = {
  status: "new", // new | connecting | connected | busy | failed | ended
  sessionId: null,
  events: [],
  userFinals: [],
  agentFinals: [],
  videoFrames: 0,
  pc: null,
  channel: null,
});

const lines = new Map(); // "user:3" / "agent:3" -> caption element

function notice(text) {
  $("notice").textContent = text || "";
  $("notice").classList.toggle("hidden", !text);
}

function setState(state) {
  const badge = $("state");
  badge.textContent = state;
  badge.className = "badge " + state;
}

function caption(who, turn, text, final) {
  const key = who + ":" + turn;
  let line = lines.get(key);
  if (!line) {
    line = document.createElement("div");
    line.className = "line " + who;
    line.innerHTML = '<span class="who"></span><span class="text"></span>';
    line.querySelector(".who").textContent = who === "user" ? "You" : "Avatar";
    $("captions").appendChild(line);
    lines.set(key, line);
  }
  line.querySelector(".text").textContent = text;
  line.classList.toggle("interim", !final);
  $("captions").scrollTop = $("captions").scrollHeight;
}

function onEvent(event) {
  dyad.events.push(event);
  if (event.type === "state_changed") {
    setState(event.state);
  } else if (event.type === "user_transcript") {
    if (event.text) caption("user", event.turn, event.text, event.final);
    if (event.final) dyad.userFinals.push(event.text);
  } else if (event.type === "agent_transcript") {
    if (event.text) caption("agent", event.turn, event.text, event.final);
    if (event.final) dyad.agentFinals.push(event.text);
  } else if (event.type === "error") {
    const line = document.createElement("div");
    line.className = "line error";
    line.textContent = "Error (" + event.source + "): " + event.message;
    $("captions").appendChild(line);
  }
}

function countFrames(video) {
  if (!video.requestVideoFrameCallback) return;
  const tick = () => {
    dyad.videoFrames += 1;
    video.requestVideoFrameCallback(tick);
  };
  video.requestVideoFrameCallback(tick);
}

async function media() {
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
  } catch (err) {
    console.warn("no camera, trying the microphone alone", err);
  }
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    console.warn("no microphone: type your questions", err);
    return new MediaStream();
  }
}

async function iceConfig() {
  const response = await fetch("/config");
  if (!response.ok) throw new Error("GET /config answered " + response.status);
  const config = await response.json();
  return { iceServers: config.iceServers || [] };
}

async function start() {
  if (dyad.pc) return;
  dyad.status = "connecting";
  $("start").disabled = true;
  notice("Connecting…");
  const local = await media();
  $("self").srcObject = local;
  // ICE servers come from dyad serve (none by default: host candidates only, nothing leaves the machine).
  const config = await iceConfig();
  const pc = (dyad.pc = new RTCPeerConnection(config));
  for (const kind of ["audio", "video"]) {
    const track = local.getTracks().find((t) => t.kind === kind);
    if (track) pc.addTransceiver(track, { direction: "sendrecv", streams: [local] });
    else pc.addTransceiver(kind, { direction: "recvonly" });
  }
  const remote = new MediaStream();
  $("avatar").srcObject = remote;
  countFrames($("avatar"));
  pc.ontrack = (e) => {
    remote.addTrack(e.track);
    $("avatar").play().catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "connected") {
      dyad.status = "connected";
      notice("");
    } else if (["failed", "closed"].includes(pc.connectionState) && dyad.status !== "ended") {
      dyad.status = "failed";
      notice("The connection was lost.");
      stop(false);
    }
  };
  const channel = (dyad.channel = pc.createDataChannel("events"));
  channel.onmessage = (e) => onEvent(JSON.parse(e.data));
  channel.onopen = () => {
    $("text").disabled = false;
    $("send").disabled = false;
  };
  $("end").disabled = false;

  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
    setTimeout(resolve, 3000);
  });
  let response;
  try {
    response = await fetch("/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
    });
  } catch (err) {
    response = null;
  }
  if (!response || !response.ok) {
    const busy = response && response.status === 503;
    dyad.status = busy ? "busy" : "failed";
    notice(busy ? "The avatar is busy, try again in a minute" : "Could not reach the avatar.");
    stop(false);
    return;
  }
  const answer = await response.json();
  dyad.sessionId = answer.session_id;
  await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
}

function stop(tellServer = true) {
  const pc = dyad.pc;
  if (tellServer && dyad.sessionId) {
    const body = JSON.stringify({ session_id: dyad.sessionId });
    navigator.sendBeacon("/end", new Blob([body], { type: "application/json" }));
  }
  if (dyad.channel && dyad.channel.readyState === "open") {
    try { dyad.channel.send(JSON.stringify({ type: "end" })); } catch (err) { /* closing */ }
  }
  if (pc) {
    pc.getSenders().forEach((s) => s.track && s.track.stop());
    pc.close();
  }
  dyad.pc = null;
  dyad.channel = null;
  $("text").disabled = true;
  $("send").disabled = true;
  $("end").disabled = true;
  $("start").disabled = false;
  if (tellServer) {
    dyad.status = "ended";
    notice("Conversation ended.");
    setState("idle");
  }
}

// Open the microphone again (after a device change); the new track replaces the old without renegotiating.
async function reopenMicrophone() {
  const pc = dyad.pc;
  if (!pc) return false;
  const sender = pc.getSenders().find((s) => s.track && s.track.kind === "audio");
  if (!sender) return false;
  sender.track.stop();
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  await sender.replaceTrack(stream.getAudioTracks()[0]);
  return true;
}

function ask(text) {
  text = (text || "").trim();
  if (!text || !dyad.channel || dyad.channel.readyState !== "open") return false;
  dyad.channel.send(JSON.stringify({ type: "text", text }));
  return true;
}

$("ask").addEventListener("submit", (e) => {
  e.preventDefault();
  if (ask($("text").value)) $("text").value = "";
});
$("start").addEventListener("click", () => start().catch((err) => {
  console.error(err);
  dyad.status = "failed";
  notice("Could not start: " + err);
}));
$("end").addEventListener("click", () => stop(true));
window.addEventListener("pagehide", () => { if (dyad.pc) stop(true); });

dyad.start = start;
dyad.stop = stop;
dyad.ask = ask;
dyad.reopenMicrophone = reopenMicrophone;
if (new URLSearchParams(location.search).has("autostart")) $("start").click();
