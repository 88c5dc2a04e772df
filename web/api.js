// The console's JSON API (docs/CONSOLE.md, docs/api/openapi.yaml) for the
// page: every call under /api/v1 with the session's bearer token; a refusal
// becomes an ApiError carrying the API's {"error": {code, message, field}}.

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field ?? null;
  }
}

const TOKEN_KEY = 'tandem.token';
const USER_KEY = 'tandem.user';

export class Api {
  constructor() {
    this.token = sessionStorage.getItem(TOKEN_KEY);
    this.user = sessionStorage.getItem(USER_KEY);
    this.onUnauthenticated = () => {};
  }

  get loggedIn() { return !!this.token; }

  async login(user, password) {
    const body = await this.call('POST', '/sessions', { user, password }, false);
    this.token = body.token;
    this.user = user;
    sessionStorage.setItem(TOKEN_KEY, this.token);
    sessionStorage.setItem(USER_KEY, user);
  }

  async logout() {
    try {
      if (this.token) await this.call('DELETE', '/sessions/current');
    } finally {
      this.forget();
    }
  }

  forget() {
    this.token = null;
    this.user = null;
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
  }

  get(path) { return this.call('GET', path); }
  post(path, body) { return this.call('POST', path, body ?? {}); }
  patch(path, body) { return this.call('PATCH', path, body); }
  del(path) { return this.call('DELETE', path); }

  async call(method, path, body, auth = true) {
    const headers = {};
    if (auth && this.token) headers.Authorization = `Bearer ${this.token}`;
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(`/api/v1${path}`, init);
    } catch (e) {
      throw new ApiError(0, 'network', `the console cannot be reached (${e.message})`);
    }
    let json = null;
    try { json = await res.json(); } catch { json = null; }
    if (!res.ok) {
      const err = json && json.error ? json.error : {};
      const e = new ApiError(res.status, err.code ?? 'http_' + res.status,
                             err.message ?? `HTTP ${res.status}`, err.field);
      if (res.status === 401 && auth) {
        this.forget();
        this.onUnauthenticated(e);
      }
      throw e;
    }
    return json;
  }
}

export const hostPath = (name) => `/hosts/${encodeURIComponent(name)}`;
export const clusterPath = (name) => `/clusters/${encodeURIComponent(name)}`;
