// The connection to the service's Socket.IO hub (docs/realtime.md), for both sites: one socket per
// tab, authenticated with a fresh access token at every (re)connect; an expired token is refreshed
// and the socket connects again. What a site subscribes to, and sends again after each reconnect
// (events sent while away are not replayed), is the site's own (its js/live.js).
import { io } from "../vendor/socket.io-4.8.4.esm.min.js";

const closed = new WeakSet();

/** A socket to the hub; ``freshAccessToken`` and ``refreshTokens`` are the site's API client's. */
export function openSocket({ freshAccessToken, refreshTokens }) {
  const socket = io({
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
  // Not after closeSocket(): a refresh that ends after sign-out must not open the socket again.
  const again = () => refreshTokens().then(() => closed.has(socket) || socket.connect(), () => null);
  socket.on("connect_error", (error) => {
    if (error?.message === "AUTH_TOKEN_EXPIRED") again();
  });
  socket.on("session.ended", (event) => {
    if (event?.payload?.code === "AUTH_TOKEN_EXPIRED") again();
  });
  return socket;
}

/** Disconnect ``socket`` (if any) for good. */
export function closeSocket(socket) {
  if (!socket) return;
  closed.add(socket);
  socket.disconnect();
}

/**
 * Add ``listener`` to the listeners of ``key`` in ``listeners`` (a Map of Sets): ``first()`` runs
 * when ``key`` had none, ``last()`` when its last one leaves. Returns the unsubscribe function.
 */
export function listen(listeners, key, listener, { first, last } = {}) {
  if (!listeners.has(key)) {
    listeners.set(key, new Set());
    first?.();
  }
  listeners.get(key).add(listener);
  return () => {
    const set = listeners.get(key);
    if (!set) return;
    set.delete(listener);
    if (set.size === 0) {
      listeners.delete(key);
      last?.();
    }
  };
}
