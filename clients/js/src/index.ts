// imlogin's client: the WebSocket protocol of docs/protocol.md behind the cloud IM SDK's login surface
// (create, login, logout, getLoginUser, getLoginStatus, on/off, EVENT, TYPES), so that porting is a rename.
// No runtime dependencies: browsers have WebSocket; on Node < 22 pass one (e.g. the `ws` package).

/** Events, named as the cloud SDK names its own (`TIM.EVENT`). */
export const EVENT = {
  /** The instance was removed by the server: `{ type, reason, code, byPlatform? }`. No reconnect follows. */
  KICKED_OUT: "kickedOut",
  /** `{ state }`: one of `TYPES.NET_STATE_*`. */
  NET_STATE_CHANGE: "netStateChange",
  /** The UserSig expires soon: `{ expiresAt }` (unix s). With `fetchUserSig` the client renews by itself. */
  USER_SIG_EXPIRING: "userSigExpiring",
  /** `fetchUserSig` gave a fresh UserSig and the login now lasts longer: `{ sigExpiresAt }`. */
  USER_SIG_RENEWED: "userSigRenewed",
  /** The UserSig expired and the instance is gone: `{ code: 6206 }`. Log in again with a fresh one. */
  USER_SIG_EXPIRED: "userSigExpired",
  /** Logged out by the server: `{ reason }` (`http_logout`, or `session_lost` when a resume found nothing). */
  LOGGED_OUT: "loggedOut",
  /** After a reconnect the instance is back: `{ instanceID }`. */
  RESUMED: "resumed",
  /** Something went wrong that no call is waiting for (a failed automatic renewal): `{ code, message }`. */
  ERROR: "error",
} as const;

export type EventName = (typeof EVENT)[keyof typeof EVENT];

/** Kick types and network states, spelled as the cloud SDK spells them (`TIM.TYPES`). */
export const TYPES = {
  /** Another login of this user took the slot on the same kind of device (web by web, or the same device). */
  KICKED_OUT_MULT_ACCOUNT: "multipleAccount",
  /** Another login of this user from another platform took the slot. */
  KICKED_OUT_MULT_DEVICE: "multipleDevice",
  KICKED_OUT_USERSIG_EXPIRED: "userSigExpired",
  /** An admin kicked, disabled or deleted the user (or the app was removed). */
  KICKED_OUT_REST_API: "REST_API_Kick",
  /** The instance went on with another connection (another tab resumed it). */
  KICKED_OUT_RESUMED_ELSEWHERE: "resumedElsewhere",
  NET_STATE_CONNECTED: "connected",
  NET_STATE_CONNECTING: "connecting",
  NET_STATE_DISCONNECTED: "disconnected",
} as const;

/** `getLoginStatus()` values, as the cloud SDK's `V2TIM_STATUS_*`. */
export const LOGIN_STATUS = { LOGINED: 1, LOGINING: 2, LOGOUT: 3 } as const;
export type LoginStatus = (typeof LOGIN_STATUS)[keyof typeof LOGIN_STATUS];

export type Platform = "android" | "iphone" | "ipad" | "windows" | "mac" | "linux" | "web";
export type NetState = "connected" | "connecting" | "disconnected";

/** Codes this client gives itself (the server's are in docs/protocol.md). */
export const CLIENT_ERROR = {
  /** The connection ended before the answer came. */
  NETWORK: 2800,
  /** No answer within `requestTimeoutMs`. */
  TIMEOUT: 2801,
  /** The call makes no sense now (e.g. `renewUserSig` while logged out). */
  STATE: 2802,
} as const;

/** A refused call: `code` is the server's (or a `CLIENT_ERROR`), `message` says why. */
export class ImLoginError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.name = "ImLoginError";
    this.code = code;
  }
}

/** What the browser's WebSocket and the `ws` package both offer. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code: number; reason?: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface CreateOptions {
  SDKAppID: number;
  /** The WebSocket endpoint, e.g. `wss://im.example.com/v1/ws`. */
  url: string;
  /** A WebSocket constructor; defaults to the global one (browsers, Node ≥ 22). */
  WebSocket?: WebSocketConstructor;
  /** Asked for a fresh UserSig when the current one is about to expire (and after a lost session). */
  fetchUserSig?: (userID: string) => Promise<string>;
  /** A `ping` at least this often while connected (default 25 000; the server drops a silent link at 90 s). */
  heartbeatMs?: number;
  /** How long a request waits for its answer (default 15 000). */
  requestTimeoutMs?: number;
  /** Reconnect backoff: the first delay and the cap, in ms (defaults 500 and 30 000), with full jitter. */
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
}

export interface LoginOptions {
  userID: string;
  userSig: string;
  platform?: Platform;
  deviceID?: string;
}

export interface LoginResult {
  userID: string;
  platform: Platform;
  instanceID: string;
  /** Unix seconds. */
  sigExpiresAt: number;
  repeatLogin: boolean;
}

export interface KickedOutEvent {
  type: (typeof TYPES)[keyof typeof TYPES];
  /** The server's reason: `multi_terminal`, `same_device`, `admin_kick`, `account_deleted`, … */
  reason: string;
  code: number;
  /** The platform of the login that took the slot (multi-terminal and same-device kicks). */
  byPlatform?: Platform;
}

type Handler = (data: any) => void;

interface Pending {
  resolve: (data: any) => void;
  reject: (err: ImLoginError) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface Session {
  userID: string;
  platform: Platform;
  instanceID: string;
  token: string;
  sigExpiresAt: number;
}

const OPEN = 1;
/** Closes after which the client must not reconnect by itself (docs/protocol.md, close codes). */
const TERMINAL_CLOSES = new Set([4001, 4002, 1008, 1009]);
/** `resume` answers that mean the instance was kicked while the link was down. */
const KICK_CODES: Record<number, string> = {
  6208: "admin_kick",
  70052: "admin_kick",
  70107: "account_deleted",
  70051: "account_disabled",
  70020: "app_removed",
};

/** Creates a client, as `TIM.create` does. */
export function create(options: CreateOptions): ImLogin {
  return new ImLogin(options);
}

export class ImLogin {
  private readonly opts: Required<Omit<CreateOptions, "fetchUserSig" | "WebSocket">> & CreateOptions;
  private readonly WS: WebSocketConstructor;
  private ws: WebSocketLike | null = null;
  private opening: Promise<WebSocketLike> | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly handlers = new Map<string, Set<Handler>>();
  private status: LoginStatus = LOGIN_STATUS.LOGOUT;
  private net: NetState = "disconnected";
  private session: Session | null = null;
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private attempts = 0;
  private destroyed = false;
  /** The expiry notice came before the login's answer (it may, when little is left): renew once logged in. */
  private renewWhenLoggedIn = false;

  constructor(options: CreateOptions) {
    this.opts = {
      heartbeatMs: 25_000,
      requestTimeoutMs: 15_000,
      reconnectBaseMs: 500,
      reconnectMaxMs: 30_000,
      ...options,
    };
    const WS = options.WebSocket ?? (globalThis as any).WebSocket;
    if (!WS) {
      throw new ImLoginError(
        CLIENT_ERROR.STATE,
        "no WebSocket here: pass one as the WebSocket option (e.g. the ws package)",
      );
    }
    this.WS = WS;
  }

  /** Logs in: verifies the UserSig, registers a new user, applies the app's multi-terminal policy. */
  async login(options: LoginOptions): Promise<LoginResult> {
    const platform = options.platform ?? "web";
    this.cancelReconnect();
    // Logged in on a live connection: a refused repeat login leaves it so (not while it was reconnecting).
    const live = this.status === LOGIN_STATUS.LOGINED && this.ws?.readyState === OPEN;
    this.status = LOGIN_STATUS.LOGINING;
    this.renewWhenLoggedIn = false;
    try {
      const data = await this.request({
        op: "login",
        sdkappid: this.opts.SDKAppID,
        user_id: options.userID,
        user_sig: options.userSig,
        platform,
        ...(options.deviceID ? { device_id: options.deviceID } : {}),
      });
      this.session = {
        userID: data.user_id,
        platform: data.platform,
        instanceID: data.instance_id,
        token: data.session_token,
        sigExpiresAt: data.sig_expires_at,
      };
      this.status = LOGIN_STATUS.LOGINED;
      if (this.renewWhenLoggedIn) {
        this.renewWhenLoggedIn = false;
        this.renewByItself();
      }
      return {
        userID: data.user_id,
        platform: data.platform,
        instanceID: data.instance_id,
        sigExpiresAt: data.sig_expires_at,
        repeatLogin: data.repeat_login,
      };
    } catch (e) {
      // A refused repeat login (same user and platform) keeps the login; a failed switch to another user or
      // platform has logged the connection out (docs/protocol.md §4).
      const repeat =
        live && this.session?.userID === options.userID && this.session.platform === platform;
      this.status = repeat ? LOGIN_STATUS.LOGINED : LOGIN_STATUS.LOGOUT;
      if (!repeat) this.session = null;
      throw e;
    }
  }

  /** Logs out and closes the connection; nothing reconnects until the next `login`. */
  async logout(): Promise<void> {
    this.cancelReconnect();
    if (!this.session) throw new ImLoginError(6014, "not logged in");
    try {
      if (this.ws?.readyState === OPEN) await this.request({ op: "logout" });
    } finally {
      this.session = null;
      this.status = LOGIN_STATUS.LOGOUT;
      this.closeSocket(1000);
    }
  }

  /** Extends the login with a fresh UserSig for the same user; no new login, no kicks. */
  async renewUserSig(userSig: string): Promise<{ sigExpiresAt: number }> {
    if (!this.session) throw new ImLoginError(CLIENT_ERROR.STATE, "not logged in");
    const data = await this.request({ op: "renew_sig", user_sig: userSig });
    if (this.session) this.session.sigExpiresAt = data.sig_expires_at;
    return { sigExpiresAt: data.sig_expires_at };
  }

  /** The logged-in UserID, `""` when not logged in. */
  getLoginUser(): string {
    return this.status === LOGIN_STATUS.LOGINED && this.session ? this.session.userID : "";
  }

  /** 1 logged in (also while the network is down and the client resumes), 2 logging in, 3 logged out. */
  getLoginStatus(): LoginStatus {
    return this.status;
  }

  getNetState(): NetState {
    return this.net;
  }

  /** The current instance, if logged in. */
  getInstanceID(): string {
    return this.session?.instanceID ?? "";
  }

  on(event: EventName, handler: Handler): void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(handler);
  }

  off(event: EventName, handler: Handler): void {
    this.handlers.get(event)?.delete(handler);
  }

  /** Closes everything; the instance stays disconnected on the server until its grace ends. */
  destroy(): void {
    this.destroyed = true;
    this.cancelReconnect();
    this.closeSocket(1000);
  }

  // ---- the connection ----

  private emit(event: EventName, data: any): void {
    for (const h of [...(this.handlers.get(event) ?? [])]) {
      try {
        h(data);
      } catch {
        // An application handler's failure is the application's; the client goes on.
      }
    }
  }

  private setNet(state: NetState): void {
    if (state === this.net) return;
    this.net = state;
    this.emit(EVENT.NET_STATE_CHANGE, { state });
  }

  private async request(body: Record<string, unknown>): Promise<any> {
    const ws = await this.connect();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ImLoginError(CLIENT_ERROR.TIMEOUT, `no answer to ${String(body.op)} in time`));
      }, this.opts.requestTimeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ id, ...body }));
    });
  }

  private connect(): Promise<WebSocketLike> {
    if (this.ws?.readyState === OPEN) return Promise.resolve(this.ws);
    if (this.opening) return this.opening;
    if (this.destroyed) return Promise.reject(new ImLoginError(CLIENT_ERROR.STATE, "destroyed"));
    this.setNet("connecting");
    const ws = new this.WS(this.opts.url);
    this.ws = ws;
    this.opening = new Promise<WebSocketLike>((resolve, reject) => {
      ws.onopen = () => {
        this.opening = null;
        this.attempts = 0;
        this.setNet("connected");
        this.startHeartbeat(ws);
        resolve(ws);
      };
      ws.onmessage = (ev) => this.onFrame(ev.data);
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        if (this.opening && this.ws === ws) {
          this.opening = null;
          reject(new ImLoginError(CLIENT_ERROR.NETWORK, `could not connect (close ${ev.code})`));
        }
        this.onClose(ws, ev.code);
      };
    });
    return this.opening;
  }

  private startHeartbeat(ws: WebSocketLike): void {
    this.stopHeartbeat();
    this.heartbeat = setInterval(() => {
      if (ws !== this.ws || ws.readyState !== OPEN) return;
      // A ping unanswered in time means a dead link: close it and let the reconnect take over.
      this.request({ op: "ping" }).catch(() => {
        if (ws === this.ws) ws.close(4000, "heartbeat unanswered");
      });
    }, this.opts.heartbeatMs);
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  private closeSocket(code: number): void {
    const ws = this.ws;
    this.ws = null;
    this.opening = null;
    this.stopHeartbeat();
    this.failPending();
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      try {
        ws.close(code);
      } catch {
        // Already closed.
      }
    }
    this.setNet("disconnected");
  }

  private failPending(): void {
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new ImLoginError(CLIENT_ERROR.NETWORK, "the connection ended before the answer"));
    }
    this.pending.clear();
  }

  private onFrame(data: any): void {
    let msg: any;
    try {
      msg = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      return;
    }
    if (typeof msg.event === "string") return this.onEvent(msg);
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.code === 0) p.resolve(msg.data ?? {});
    else p.reject(new ImLoginError(msg.code, msg.message || `error ${msg.code}`));
  }

  private onEvent(msg: any): void {
    switch (msg.event) {
      case "kicked_offline":
        this.loggedOut();
        this.emit(EVENT.KICKED_OUT, kickOf(msg.reason, msg.code, msg.by_platform));
        break;
      case "user_sig_expiring":
        this.emit(EVENT.USER_SIG_EXPIRING, { expiresAt: msg.expires_at });
        if (this.status === LOGIN_STATUS.LOGINING) this.renewWhenLoggedIn = true;
        else this.renewByItself();
        break;
      case "user_sig_expired":
        this.loggedOut();
        this.closeSocket(1000);
        this.emit(EVENT.USER_SIG_EXPIRED, { code: msg.code });
        break;
      case "logged_out":
        this.loggedOut();
        this.closeSocket(1000);
        this.emit(EVENT.LOGGED_OUT, { reason: msg.reason });
        break;
    }
  }

  private loggedOut(): void {
    this.session = null;
    this.status = LOGIN_STATUS.LOGOUT;
  }

  private renewByItself(): void {
    const fetchSig = this.opts.fetchUserSig;
    const session = this.session;
    if (!fetchSig || !session) return;
    fetchSig(session.userID)
      .then((sig) => this.renewUserSig(sig))
      .then((renewed) => this.emit(EVENT.USER_SIG_RENEWED, renewed))
      .catch((e) =>
        this.emit(EVENT.ERROR, {
          code: e instanceof ImLoginError ? e.code : CLIENT_ERROR.STATE,
          message: `automatic renewal failed: ${e?.message ?? e}`,
        }),
      );
  }

  private onClose(ws: WebSocketLike, code: number): void {
    if (ws !== this.ws) return;
    this.ws = null;
    this.stopHeartbeat();
    this.failPending();
    this.setNet("disconnected");
    if (code === 4002 && this.session) {
      this.loggedOut();
      this.emit(EVENT.KICKED_OUT, kickOf("resumed_elsewhere", 4002));
      return;
    }
    if (TERMINAL_CLOSES.has(code)) {
      // A kick already said so (4001); the others end the login here too.
      if (this.session) this.loggedOut();
      return;
    }
    if (this.session && !this.destroyed) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    this.cancelReconnect();
    const cap = Math.min(this.opts.reconnectMaxMs, this.opts.reconnectBaseMs * 2 ** this.attempts);
    this.attempts = Math.min(this.attempts + 1, 30);
    // Full jitter: clients cut off together do not come back together.
    const delay = Math.random() * cap;
    // The login stands meanwhile (getLoginStatus stays 1); the network state says the link is down.
    this.setNet("connecting");
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.resume();
    }, delay);
  }

  private cancelReconnect(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  private async resume(): Promise<void> {
    const session = this.session;
    if (!session) return;
    let data: any;
    try {
      data = await this.request({ op: "resume", session_token: session.token });
    } catch (e) {
      if (this.session !== session) return;
      const code = e instanceof ImLoginError ? e.code : CLIENT_ERROR.NETWORK;
      // The application called login() meanwhile, on the same connection: that login decides.
      if (code === 7501 || this.status === LOGIN_STATUS.LOGINING) return;
      if (code === CLIENT_ERROR.NETWORK || code === CLIENT_ERROR.TIMEOUT || code === 70169) {
        // Not reached yet, or the server cannot tell now: try again later.
        if (this.ws) this.closeSocket(1000);
        this.scheduleReconnect();
        return;
      }
      this.loggedOut();
      if (KICK_CODES[code]) {
        this.emit(EVENT.KICKED_OUT, kickOf(KICK_CODES[code], code));
      } else {
        // The server no longer knows the instance (its grace ended, or the cluster lost it).
        void this.loginAgain(session);
      }
      return;
    }
    if (this.session !== session || this.status === LOGIN_STATUS.LOGINING) return;
    session.instanceID = data.instance_id;
    session.sigExpiresAt = data.sig_expires_at;
    this.status = LOGIN_STATUS.LOGINED;
    this.emit(EVENT.RESUMED, { instanceID: data.instance_id });
  }

  /** After a lost session: a new login with a fresh ticket if the app gave a way to get one. */
  private async loginAgain(old: Session): Promise<void> {
    const fetchSig = this.opts.fetchUserSig;
    if (fetchSig) {
      try {
        const userSig = await fetchSig(old.userID);
        await this.login({ userID: old.userID, userSig, platform: old.platform });
        return;
      } catch {
        // Said below.
      }
    }
    this.emit(EVENT.LOGGED_OUT, { reason: "session_lost" });
  }
}

function kickOf(reason: string, code: number, byPlatform?: Platform): KickedOutEvent {
  let type: KickedOutEvent["type"];
  switch (reason) {
    case "multi_terminal":
      type = byPlatform === "web" ? TYPES.KICKED_OUT_MULT_ACCOUNT : TYPES.KICKED_OUT_MULT_DEVICE;
      break;
    case "same_device":
      type = TYPES.KICKED_OUT_MULT_ACCOUNT;
      break;
    case "resumed_elsewhere":
      type = TYPES.KICKED_OUT_RESUMED_ELSEWHERE;
      break;
    default:
      type = TYPES.KICKED_OUT_REST_API;
  }
  return byPlatform ? { type, reason, code, byPlatform } : { type, reason, code };
}
