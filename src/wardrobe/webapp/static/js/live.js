// Live updates through the service's Socket.IO hub (docs/realtime.md): a task's progress while
// its page is open, and the user's quota and orders. One socket per tab, opened once signed in;
// after every (re)connect the subscriptions are sent again and each task's state is taken from the
// acknowledgement (events sent while away are not replayed); an expired access token is refreshed
// before connecting again. Pages that must not depend on the socket ask live() and poll the API
// while it is down.
import { io } from "../vendor/socket.io-4.8.4.esm.min.js";
import { freshAccessToken, refreshTokens } from "./api.js";

let socket = null;
const taskListeners = new Map(); // task id -> Set of listeners
const userListeners = new Map(); // event name -> Set of listeners

function deliver(task) {
  for (const listener of taskListeners.get(task?.id) || []) listener(task, "socket");
}

function subscribe(ids) {
  if (!socket?.connected || ids.length === 0) return;
  socket.emit("subscribe", { task_ids: ids }, (ack) => {
    for (const task of ack?.tasks || []) deliver(task);
  });
}

function reconnectWithFreshToken() {
  refreshTokens().then(
    () => socket?.connect(),
    () => null,
  );
}

export function connectLive() {
  if (socket) return socket;
  socket = io({
    path: "/socket.io",
    auth: (send) => {
      freshAccessToken().then(
        (token) => send({ token }),
        () => send({ token: "" }),
      );
    },
    reconnectionAttempts: 5,
    reconnectionDelay: 3000,
  });
  socket.on("connect", () => subscribe([...taskListeners.keys()]));
  socket.on("connect_error", (error) => {
    if (error?.message === "AUTH_TOKEN_EXPIRED") reconnectWithFreshToken();
  });
  socket.on("session.ended", (event) => {
    if (event?.payload?.code === "AUTH_TOKEN_EXPIRED") reconnectWithFreshToken();
  });
  socket.on("task.updated", (event) => deliver(event?.payload));
  for (const name of ["quota.updated", "order.updated"]) {
    socket.on(name, (event) => {
      for (const listener of userListeners.get(name) || []) listener(event?.payload);
    });
  }
  return socket;
}

/** Whether pushes arrive now (else a page polls). */
export function live() {
  return Boolean(socket?.connected);
}

/** Call ``listener(task, "socket")`` on each update of task ``id``; returns the unsubscribe function. */
export function watchTask(id, listener) {
  connectLive();
  if (!taskListeners.has(id)) {
    taskListeners.set(id, new Set());
    subscribe([id]);
  }
  taskListeners.get(id).add(listener);
  return () => {
    const listeners = taskListeners.get(id);
    if (!listeners) return;
    listeners.delete(listener);
    if (listeners.size === 0) {
      taskListeners.delete(id);
      if (socket?.connected) socket.emit("unsubscribe", { task_ids: [id] });
    }
  };
}

/** Call ``listener(payload)`` on each ``quota.updated`` or ``order.updated``; returns the unsubscribe function. */
export function onUserEvent(name, listener) {
  connectLive();
  if (!userListeners.has(name)) userListeners.set(name, new Set());
  userListeners.get(name).add(listener);
  return () => userListeners.get(name)?.delete(listener);
}

export function closeLive() {
  taskListeners.clear();
  userListeners.clear();
  if (socket) {
    socket.disconnect();
    socket = null;
  }
}
