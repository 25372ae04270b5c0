// The native admin API (/admin/v1/apps/{sdkappid}, docs/admin.md §2) as the console uses it.

export interface User {
  user_id: string;
  nick: string;
  face_url: string;
  created_at: number;
  disabled: boolean;
}
export interface Instance {
  user_id: string;
  platform: string;
  instance_id: string;
  device_id: string | null;
  state: "online" | "disconnected";
  login_at: number;
  client_ip: string;
}
export interface Policy {
  mode: "single" | "dual" | "triple" | "multi";
  web_instances: number;
  instances_per_platform: number;
}
export interface DeadLetter {
  event_id: string;
  user_id: string;
  seq: number;
  attempts: number;
  last_error: string;
  body: unknown;
}

/** An answer other than 2xx: the status and the API's `{code, message}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * `?user_id=…`: users are named in the query string (the API's `/user` routes), where every UserID survives; in a
 * path, `.` and `..` would be resolved as dot segments by the browser (percent-encoded too) and never arrive.
 */
function userQuery(id: string): string {
  return `?${new URLSearchParams({ user_id: id })}`;
}

export class AdminApi {
  constructor(
    readonly sdkappid: number,
    private readonly key: string,
  ) {}

  async call<T = any>(method: string, route: string, body?: unknown): Promise<T> {
    const r = await fetch(`/admin/v1/apps/${this.sdkappid}${route}`, {
      method,
      headers: {
        authorization: `Bearer ${this.key}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    let v: any = null;
    try {
      v = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON: said below.
    }
    if (!r.ok) throw new ApiError(r.status, v?.code ?? 0, v?.message ?? `HTTP ${r.status}`);
    return v as T;
  }

  online() {
    return this.call<{ total: number; by_platform: Record<string, number> }>("GET", "/stats/online");
  }
  dau(from: string, to: string) {
    return this.call<{ days: { date: string; users: number }[] }>("GET", `/stats/dau?from=${from}&to=${to}`);
  }
  users(cursor?: string) {
    const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    return this.call<{ users: User[]; next_cursor?: string }>("GET", `/users?limit=50${q}`);
  }
  user(id: string) {
    return this.call<User & { instances: Instance[] }>("GET", `/user${userQuery(id)}`);
  }
  kick(id: string, instanceId: string | null, revoke: boolean) {
    return this.call<{ kicked: number }>("POST", `/user/kick${userQuery(id)}`, {
      ...(instanceId ? { instance_id: instanceId } : {}),
      revoke_sigs: revoke,
    });
  }
  setDisabled(id: string, disabled: boolean) {
    return this.call("POST", `/user/${disabled ? "disable" : "enable"}${userQuery(id)}`);
  }
  deleteUser(id: string) {
    return this.call("DELETE", `/user${userQuery(id)}`);
  }
  policy() {
    return this.call<Policy>("GET", "/policy");
  }
  setPolicy(p: Policy) {
    return this.call<Policy>("PUT", "/policy", p);
  }
  resetPolicy() {
    return this.call<Policy>("DELETE", "/policy");
  }
  deadLetters(cursor?: string) {
    const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    return this.call<{ events: DeadLetter[]; next_cursor?: string }>("GET", `/webhooks/dead_letters?limit=50${q}`);
  }
  retryDeadLetter(eventId: string) {
    return this.call("POST", `/webhooks/dead_letters/${encodeURIComponent(eventId)}/retry`);
  }
  dropDeadLetter(eventId: string) {
    return this.call("DELETE", `/webhooks/dead_letters/${encodeURIComponent(eventId)}`);
  }
}
