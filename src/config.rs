//! Configuration: one name per setting, three spellings (DESIGN.md, "Configuration").
//!
//! `--max-payload` (flag) overrides `HUBBUB_MAX_PAYLOAD` (environment), which overrides
//! `max_payload` in the `hubbub.toml` chosen by `--config`, which overrides the default.
//! Sizes take units (`1MiB`, `64KiB`, `1000`), durations too (`25s`, `300ms`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Identity mode at the upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMode {
    /// Development: the user is named by `/ws/{user}` or `?user=`; anonymous otherwise.
    None,
    /// A signed JWT names the user (`sub`); see the `jwt_*` settings.
    Jwt,
    /// A user name and password checked against `users_file` (Argon2 hashes).
    Basic,
    /// The application's session cookie, checked by its `auth_callback` (the BFF pattern).
    Cookie,
}

/// Whether the Socket.IO admin UI's namespace exists, and how it checks who connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminUi {
    /// No `/admin` namespace.
    Off,
    /// `/admin` with basic auth (`admin_username`, `admin_password`).
    On,
    /// `/admin` open to anyone: development only.
    Open,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines; coloured only when the output is a terminal.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The server's settings, typed. Every field documents its default.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:3000`: loopback until the operator decides.
    pub bind: SocketAddr,
    /// Identity mode. Default `none`.
    pub auth: AuthMode,
    /// Users file for `auth = "basic"`: `name:<argon2 PHC hash>` lines.
    pub users_file: Option<PathBuf>,
    /// HS256 secret for `auth = "jwt"`.
    pub jwt_secret: Option<String>,
    /// PEM public key (RSA or EC) or JWKS file for `auth = "jwt"`.
    pub jwt_public_key: Option<PathBuf>,
    /// Accepted JWT algorithms (pinned). Default: the one the key implies (HS256 for a
    /// secret, RS256 for an RSA key, ES256 for an EC key).
    pub jwt_algorithms: Vec<String>,
    /// Required `aud` of tokens, when set.
    pub jwt_audience: Option<String>,
    /// Required `iss` of tokens, when set.
    pub jwt_issuer: Option<String>,
    /// Cookie a token may come in. Default `hubbub_token`.
    pub jwt_cookie: String,
    /// For `auth = "cookie"`: the application's URL (http or https) that Hubbub asks, with
    /// the client's `Cookie` header, who the session belongs to.
    pub auth_callback: Option<String>,
    /// How long the callback may take before the connection is refused. Default 5 s.
    pub auth_callback_timeout: Duration,
    /// How long a callback's answer for one `Cookie` header is reused. Default 30 s; zero
    /// asks every time.
    pub auth_cache: Duration,
    /// Origins allowed to open connections from a browser (`*` for any). Default: any in
    /// auth mode `none`; the server's own origin only in the other modes.
    pub allowed_origins: Option<Vec<String>>,
    /// Time a client has to send its request headers before the connection is dropped
    /// (slowloris). Default 10 s.
    pub handshake_timeout: Duration,
    /// Messages per second a connection may send (bursts of twice that); 0 is off.
    /// Default 1000.
    pub rate_messages: f64,
    /// Bytes per second a connection may send (bursts of twice that); 0 is off.
    /// Default 8 MiB.
    pub rate_bytes: f64,
    /// Handshakes per second per client address (bursts of twice that); 0 is off. Default
    /// off (clients behind one NAT share an address).
    pub rate_handshakes_per_ip: f64,
    /// A user's new connection closes their older ones with 4409. Default off.
    pub single_session: bool,
    /// PEM certificate chain: with `tls_key`, the server speaks https and wss itself.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// API key for `/api/*`, `/rest/message` and `/metrics`; unset means loopback only.
    pub api_key: Option<String>,
    /// Messages a new room keeps. Default 100.
    pub default_history: usize,
    /// How long a kept message lasts; zero keeps it until it is one of too many. Default 0.
    pub history_ttl: Duration,
    /// Direct messages kept per conversation (replayed through `dm:{user}`); 0 keeps none.
    /// Default 0.
    pub dm_history: usize,
    /// A directory served at `/` beside the built-in pages, like `express.static` (its
    /// `index.html` replaces the built-in page at `/`). Default unset.
    pub static_dir: Option<PathBuf>,
    /// The official Socket.IO admin UI's server side (`/admin`): off (default), on (basic auth
    /// with `admin_username` and `admin_password`), or open (no auth: development only).
    pub admin_ui: AdminUi,
    /// The user name the admin UI gives. Default `admin`.
    pub admin_username: String,
    /// The Argon2 PHC hash of the admin UI's password (required with `admin_ui = "on"`).
    pub admin_password: Option<String>,
    /// The npm `socket.io-client` package's `dist/` directory: `/socket.io/socket.io.js` (and
    /// `.min.js`, `.esm.min.js`, their maps) are served from it, as socket.io serves them.
    /// Default unset (not served).
    pub socketio_client_dir: Option<PathBuf>,
    /// Heartbeat ping interval. Default 25 s (Socket.IO's pingInterval).
    pub heartbeat_interval: Duration,
    /// Time a pong may take before the connection is reaped. Default 20 s.
    pub heartbeat_timeout: Duration,
    /// Largest frame, reassembled or decompressed message, and HTTP body. Default 1 MiB.
    pub max_payload: usize,
    /// Connections at once; more get HTTP 503 at the upgrade. Default 100,000.
    pub max_connections: usize,
    /// Connections at once from one client address; more get HTTP 429 at the upgrade. Zero
    /// is no limit, the default (clients behind one NAT or proxy share an address).
    pub max_connections_per_ip: usize,
    /// Subscriptions one GraphQL connection may hold at once. Default 100.
    pub graphql_max_subscriptions: usize,
    /// Outbound bytes queued per connection before it is closed as a slow consumer. Default 1 MiB.
    pub queue_limit: usize,
    /// permessage-deflate threshold: messages at least this large are compressed; `None`
    /// turns compression off. Default on, over 1 KiB (small messages do not gain).
    pub compression: Option<usize>,
    /// Log lines as text (coloured on a terminal only) or JSON. Default text.
    pub log_format: LogFormat,
    /// Seconds between info log lines with connection counts; zero is off. Default off.
    pub stats_log_interval: Duration,
    /// How long shutdown waits for clients to close before exiting. Default 5 s.
    pub shutdown_timeout: Duration,
    /// Socket.IO's `connectTimeout`: a session that joins no namespace in time is closed.
    /// Default 45 s, as in socket.io.
    pub connect_timeout: Duration,
    /// Socket.IO's path. Default `/socket.io`.
    pub socketio_path: String,
    /// Socket.IO connection state recovery window; zero turns it off. Default off, as in
    /// socket.io: with it on, every recorded event carries its offset as an extra last
    /// argument, which clients without recovery (python-socketio) pass to handlers.
    pub socketio_recovery: Duration,
    /// Fan-out adapter: `local` (one node) or `redis` (one node of a cluster that meets at
    /// `redis_url`). Default `local`.
    pub adapter: String,
    /// The Redis server of a cluster (`adapter = "redis"`). Default
    /// `redis://127.0.0.1:6379`.
    pub redis_url: String,
    /// The prefix of the cluster's channels, as `@socket.io/redis-adapter`'s `key` option
    /// (Hubbub's own channels and keys get it too unless it is the default). Default
    /// `socket.io`.
    pub redis_key: String,
    /// Which flavour of `@socket.io/redis-adapter` the cluster speaks: `classic`
    /// (`createAdapter`, `PUBLISH`) or `sharded` (`createShardedAdapter`, Redis 7 sharded
    /// pub/sub, a channel per room). Default `classic`.
    pub redis_pubsub: String,
    /// Where rooms and history are kept between runs: `sqlite` (the file `db`) or
    /// `memory` (nothing survives a restart). Default `sqlite`.
    pub store: String,
    /// SQLite file. Default `./hubbub.db`.
    pub db: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
            auth: AuthMode::None,
            users_file: None,
            jwt_secret: None,
            jwt_public_key: None,
            jwt_algorithms: Vec::new(),
            jwt_audience: None,
            jwt_issuer: None,
            jwt_cookie: "hubbub_token".into(),
            auth_callback: None,
            auth_callback_timeout: Duration::from_secs(5),
            auth_cache: Duration::from_secs(30),
            allowed_origins: None,
            handshake_timeout: Duration::from_secs(10),
            rate_messages: 1000.0,
            rate_bytes: (8u64 << 20) as f64,
            rate_handshakes_per_ip: 0.0,
            single_session: false,
            tls_cert: None,
            tls_key: None,
            api_key: None,
            default_history: 100,
            history_ttl: Duration::ZERO,
            dm_history: 0,
            static_dir: None,
            socketio_client_dir: None,
            admin_ui: AdminUi::Off,
            admin_username: "admin".into(),
            admin_password: None,
            heartbeat_interval: Duration::from_secs(25),
            heartbeat_timeout: Duration::from_secs(20),
            max_payload: 1 << 20,
            max_connections: 100_000,
            max_connections_per_ip: 0,
            graphql_max_subscriptions: 100,
            queue_limit: 1 << 20,
            compression: Some(1024),
            log_format: LogFormat::Text,
            stats_log_interval: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(45),
            socketio_path: "/socket.io".into(),
            socketio_recovery: Duration::ZERO,
            adapter: "local".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_key: "socket.io".into(),
            redis_pubsub: "classic".into(),
            store: "sqlite".into(),
            db: PathBuf::from("./hubbub.db"),
        }
    }
}

/// A bad setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value did not parse.
    #[error("setting `{name}`: {message}")]
    Invalid {
        /// The setting.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The config file could not be read or parsed.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

macro_rules! settings {
    ($( $field:ident : $help:literal ),* $(,)?) => {
        /// Command-line flags; each setting is also read from `HUBBUB_<NAME>`.
        #[derive(Clone, Debug, Default, Parser)]
        #[command(name = "hubbub", version, about = "Hubbub: real-time messaging server")]
        pub struct Args {
            /// A hubbub.toml file with any of the settings below (env `HUBBUB_CONFIG`).
            #[arg(long, env = "HUBBUB_CONFIG")]
            pub config: Option<PathBuf>,
            $(
                #[doc = $help]
                #[arg(long)]
                pub $field: Option<String>,
            )*
        }

        impl Args {
            /// Settings given as flags, falling back to `HUBBUB_<NAME>` variables.
            fn given(&self, env: &dyn Fn(&str) -> Option<String>) -> BTreeMap<&'static str, String> {
                let mut m = BTreeMap::new();
                $(
                    let name = stringify!($field);
                    let value = self.$field.clone()
                        .or_else(|| env(&format!("HUBBUB_{}", name.to_ascii_uppercase())));
                    if let Some(v) = value { m.insert(name, v); }
                )*
                m
            }
        }

        const NAMES: &[&str] = &[$( stringify!($field) ),*];
    };
}

settings! {
    bind: "Address to listen on [default: 127.0.0.1:3000]",
    auth: "Identity mode: none, jwt, basic or cookie [default: none]",
    users_file: "Users file for auth basic: name:<argon2 hash> lines",
    jwt_secret: "HS256 secret for auth jwt",
    jwt_public_key: "PEM public key (RSA/EC) or JWKS file for auth jwt",
    jwt_algorithms: "Accepted JWT algorithms, e.g. RS256,ES256 [default: implied by the key]",
    jwt_audience: "Required JWT aud [default: not checked]",
    jwt_issuer: "Required JWT iss [default: not checked]",
    jwt_cookie: "Cookie that may carry the token [default: hubbub_token]",
    auth_callback: "For auth cookie: the app URL asked who a Cookie header belongs to",
    auth_callback_timeout: "Time the auth callback may take, e.g. 5s [default: 5s]",
    auth_cache: "Time a callback answer is reused for the same cookies; 0 is off [default: 30s]",
    allowed_origins: "Browser origins allowed, comma-separated, or * [default: any in none, same-origin otherwise]",
    handshake_timeout: "Time to send the request headers, e.g. 10s [default: 10s]",
    rate_messages: "Messages per second per connection; 0 is off [default: 1000]",
    rate_bytes: "Bytes per second per connection, e.g. 8MiB; 0 is off [default: 8MiB]",
    rate_handshakes_per_ip: "Handshakes per second per client address; 0 is off [default: 0]",
    single_session: "on: a user's new connection closes their older ones (4409) [default: off]",
    tls_cert: "PEM certificate chain; with tls_key, serve https and wss [default: plain]",
    tls_key: "PEM private key for tls_cert",
    api_key: "API key protecting /api/*, /rest/message and /metrics [default: loopback only]",
    default_history: "Messages a new room keeps [default: 100]",
    history_ttl: "How long a kept message lasts, e.g. 7d; 0 is no limit [default: 0]",
    dm_history: "Direct messages kept per conversation; 0 keeps none [default: 0]",
    static_dir: "Directory served at / beside the built-in pages [default: none]",
    socketio_client_dir: "socket.io-client's dist/ directory, served as /socket.io/socket.io.js [default: none]",
    admin_ui: "The Socket.IO admin UI's namespace /admin: off, on (basic auth) or open [default: off]",
    admin_username: "The admin UI's user name [default: admin]",
    admin_password: "The admin UI's password, as an Argon2 PHC hash",
    heartbeat_interval: "Ping interval, e.g. 25s [default: 25s]",
    heartbeat_timeout: "Pong timeout before reaping, e.g. 20s [default: 20s]",
    max_payload: "Largest frame/message/body, e.g. 1MiB [default: 1MiB]",
    max_connections: "Connections at once [default: 100000]",
    max_connections_per_ip: "Connections at once per client address; 0 is off [default: 0]",
    graphql_max_subscriptions: "Subscriptions one GraphQL connection may hold at once [default: 100]",
    queue_limit: "Outbound queue per connection, e.g. 1MiB [default: 1MiB]",
    compression: "permessage-deflate: on, off, or a threshold size [default: 1KiB]",
    log_format: "Log lines: text (coloured on a terminal only) or json [default: text]",
    stats_log_interval: "Interval of the connection-count log line; 0 is off [default: 0]",
    shutdown_timeout: "Time allowed for clients to close at shutdown [default: 5s]",
    connect_timeout: "Socket.IO connectTimeout [default: 45s]",
    socketio_path: "Socket.IO path [default: /socket.io]",
    socketio_recovery: "Socket.IO connection state recovery window, e.g. 2m; 0 is off [default: 0]",
    adapter: "Fan-out adapter: local, or redis for a cluster [default: local]",
    redis_url: "The cluster's Redis server [default: redis://127.0.0.1:6379]",
    redis_key: "Prefix of the cluster's Redis channels, as the Node adapter's key [default: socket.io]",
    redis_pubsub: "The Node adapter's flavour the cluster speaks: classic, or sharded (Redis 7 SPUBLISH) [default: classic]",
    store: "History store: sqlite, memory, or redis (a cluster's) [default: sqlite]",
    db: "SQLite file [default: ./hubbub.db]",
}

impl Config {
    /// Builds the configuration from flags, environment and the optional file.
    pub fn from_args(args: &Args) -> Result<Self, ConfigError> {
        let mut values = match &args.config {
            Some(path) => read_file(path)?,
            None => BTreeMap::new(),
        };
        let env = |k: &str| std::env::var(k).ok();
        values.extend(
            args.given(&env)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v)),
        );
        Self::from_values(&values)
    }

    /// Builds the configuration from `name -> value` strings over the defaults.
    pub fn from_values(values: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut c = Config::default();
        for (name, v) in values {
            let invalid = |message: String| ConfigError::Invalid {
                name: name.clone(),
                message,
            };
            match name.as_str() {
                "bind" => c.bind = v.parse().map_err(|e| invalid(format!("{e}: {v}")))?,
                "auth" => {
                    c.auth = match v.as_str() {
                        "none" => AuthMode::None,
                        "jwt" => AuthMode::Jwt,
                        "basic" => AuthMode::Basic,
                        "cookie" => AuthMode::Cookie,
                        _ => return Err(invalid(format!("unknown auth mode `{v}`"))),
                    }
                }
                "api_key" => c.api_key = (!v.is_empty()).then(|| v.clone()),
                "users_file" => c.users_file = (!v.is_empty()).then(|| PathBuf::from(v)),
                "jwt_secret" => c.jwt_secret = (!v.is_empty()).then(|| v.clone()),
                "jwt_public_key" => c.jwt_public_key = (!v.is_empty()).then(|| PathBuf::from(v)),
                "jwt_algorithms" => c.jwt_algorithms = list(v),
                "jwt_audience" => c.jwt_audience = (!v.is_empty()).then(|| v.clone()),
                "jwt_issuer" => c.jwt_issuer = (!v.is_empty()).then(|| v.clone()),
                "jwt_cookie" => c.jwt_cookie = v.clone(),
                "auth_callback" => c.auth_callback = (!v.is_empty()).then(|| v.clone()),
                "auth_callback_timeout" => {
                    c.auth_callback_timeout = parse_duration(v).map_err(invalid)?
                }
                "auth_cache" => c.auth_cache = parse_duration(v).map_err(invalid)?,
                "allowed_origins" => c.allowed_origins = Some(list(v)),
                "handshake_timeout" => c.handshake_timeout = parse_duration(v).map_err(invalid)?,
                "rate_messages" => c.rate_messages = parse_rate(v).map_err(invalid)?,
                "rate_bytes" => c.rate_bytes = parse_size(v).map_err(invalid)? as f64,
                "rate_handshakes_per_ip" => {
                    c.rate_handshakes_per_ip = parse_rate(v).map_err(invalid)?
                }
                "single_session" => c.single_session = parse_switch(v).map_err(invalid)?,
                "tls_cert" => c.tls_cert = (!v.is_empty()).then(|| PathBuf::from(v)),
                "tls_key" => c.tls_key = (!v.is_empty()).then(|| PathBuf::from(v)),
                "default_history" => c.default_history = parse_count(v).map_err(invalid)?,
                "history_ttl" => c.history_ttl = parse_duration(v).map_err(invalid)?,
                "dm_history" => c.dm_history = parse_count(v).map_err(invalid)?,
                "static_dir" => c.static_dir = (!v.is_empty()).then(|| PathBuf::from(v)),
                "admin_ui" => {
                    c.admin_ui = match v.as_str() {
                        "off" | "false" => AdminUi::Off,
                        "on" | "true" => AdminUi::On,
                        "open" => AdminUi::Open,
                        _ => return Err(invalid(format!("`{v}` is not off, on or open"))),
                    }
                }
                "admin_username" => c.admin_username = v.clone(),
                "admin_password" => c.admin_password = (!v.is_empty()).then(|| v.clone()),
                "socketio_client_dir" => {
                    c.socketio_client_dir = (!v.is_empty()).then(|| PathBuf::from(v))
                }
                "heartbeat_interval" => {
                    c.heartbeat_interval = parse_duration(v).map_err(invalid)?
                }
                "heartbeat_timeout" => c.heartbeat_timeout = parse_duration(v).map_err(invalid)?,
                "max_payload" => c.max_payload = parse_size(v).map_err(invalid)?,
                "max_connections" => c.max_connections = parse_count(v).map_err(invalid)?,
                "graphql_max_subscriptions" => {
                    c.graphql_max_subscriptions = parse_count(v).map_err(invalid)?
                }
                "max_connections_per_ip" => {
                    c.max_connections_per_ip = parse_count(v).map_err(invalid)?
                }
                "queue_limit" => c.queue_limit = parse_size(v).map_err(invalid)?,
                "compression" => {
                    c.compression = match v.as_str() {
                        "on" | "true" => Some(1024),
                        "off" | "false" => None,
                        _ => Some(parse_size(v).map_err(invalid)?),
                    }
                }
                "log_format" => {
                    c.log_format = match v.as_str() {
                        "text" => LogFormat::Text,
                        "json" => LogFormat::Json,
                        _ => return Err(invalid(format!("`{v}` is not text or json"))),
                    }
                }
                "stats_log_interval" => {
                    c.stats_log_interval = parse_duration(v).map_err(invalid)?
                }
                "shutdown_timeout" => c.shutdown_timeout = parse_duration(v).map_err(invalid)?,
                "connect_timeout" => c.connect_timeout = parse_duration(v).map_err(invalid)?,
                "socketio_recovery" => c.socketio_recovery = parse_duration(v).map_err(invalid)?,
                "socketio_path" => {
                    if !v.starts_with('/') {
                        return Err(invalid(format!("`{v}` must start with /")));
                    }
                    c.socketio_path = v.trim_end_matches('/').to_string();
                }
                "adapter" => match v.as_str() {
                    "local" | "redis" => c.adapter = v.clone(),
                    _ => return Err(invalid(format!("unknown adapter `{v}` (local or redis)"))),
                },
                "redis_url" => {
                    redis::Client::open(v.as_str())
                        .map_err(|e| invalid(format!("`{v}` is not a Redis URL: {e}")))?;
                    c.redis_url = v.clone();
                }
                "redis_key" => {
                    if v.is_empty()
                        || v.contains(['#', '*', '?', '['])
                        || v.chars().any(char::is_whitespace)
                    {
                        return Err(invalid(format!(
                            "`{v}`: a key is not empty and has no #, *, ?, [ or spaces"
                        )));
                    }
                    c.redis_key = v.clone();
                }
                "redis_pubsub" => match v.as_str() {
                    "classic" | "sharded" => c.redis_pubsub = v.clone(),
                    _ => {
                        return Err(invalid(format!(
                            "unknown redis_pubsub `{v}` (classic or sharded)"
                        )))
                    }
                },
                "store" => match v.as_str() {
                    "sqlite" | "memory" | "redis" => c.store = v.clone(),
                    _ => return Err(invalid(format!("unknown store `{v}`"))),
                },
                "db" => c.db = PathBuf::from(v),
                other => {
                    return Err(ConfigError::Invalid {
                        name: other.to_string(),
                        message: format!("unknown setting; known: {}", NAMES.join(", ")),
                    })
                }
            }
        }
        if c.max_payload == 0 || c.queue_limit == 0 {
            return Err(ConfigError::Invalid {
                name: "max_payload".into(),
                message: "sizes must be above zero".into(),
            });
        }
        if c.auth == AuthMode::Jwt && c.jwt_secret.is_none() && c.jwt_public_key.is_none() {
            return Err(ConfigError::Invalid {
                name: "auth".into(),
                message: "auth `jwt` needs `jwt_secret` (HS256) or `jwt_public_key` (RS256/ES256)"
                    .into(),
            });
        }
        if c.store == "redis" && c.adapter != "redis" {
            return Err(ConfigError::Invalid {
                name: "store".into(),
                message: "store `redis` is the cluster's store: it needs adapter `redis`".into(),
            });
        }
        if c.tls_cert.is_some() != c.tls_key.is_some() {
            return Err(ConfigError::Invalid {
                name: "tls_cert".into(),
                message: "tls_cert and tls_key go together".into(),
            });
        }
        if c.auth == AuthMode::Basic && c.users_file.is_none() {
            return Err(ConfigError::Invalid {
                name: "auth".into(),
                message: "auth `basic` needs `users_file`".into(),
            });
        }
        if c.admin_ui == AdminUi::On {
            let hash = c.admin_password.as_deref().unwrap_or_default();
            if argon2::password_hash::PasswordHash::new(hash).is_err() {
                return Err(ConfigError::Invalid {
                    name: "admin_password".into(),
                    message: "admin_ui = on needs admin_password, an Argon2 PHC hash \
                              ($argon2id$v=19$...)"
                        .into(),
                });
            }
        }
        if c.handshake_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                name: "handshake_timeout".into(),
                message: "must be above zero".into(),
            });
        }
        if c.heartbeat_interval.is_zero() || c.heartbeat_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                name: "heartbeat_interval".into(),
                message: "heartbeat durations must be above zero".into(),
            });
        }
        Ok(c)
    }
}

fn read_file(path: &PathBuf) -> Result<BTreeMap<String, String>, ConfigError> {
    let err = |message: String| ConfigError::File {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (k, v) in table {
        let s = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => return Err(err(format!("`{k}` has an unsupported value {other:?}"))),
        };
        out.insert(k, s);
    }
    Ok(out)
}

/// Parses a non-negative rate such as `500` or `2.5`.
fn parse_rate(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("`{v}` is not a rate (a number, 0 for off)")),
    }
}

/// Parses `on`/`off` (and `true`/`false`).
fn parse_switch(v: &str) -> Result<bool, String> {
    match v.trim() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("`{v}` is not on or off")),
    }
}

/// Splits a comma-separated list, trimming and dropping empty items.
fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses `1MiB`, `64KiB`, `10kB`, `1000` into bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 1MiB, 64KiB, 1000)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` in `{s}`")),
    };
    n.checked_mul(mult)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Parses `25s`, `300ms`, `1m`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration (e.g. 25s): {e}"))
}

fn parse_count(s: &str) -> Result<usize, String> {
    s.trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("64 KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(parse_duration("25s").unwrap(), Duration::from_secs(25));
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn flags_override_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hubbub.toml");
        std::fs::write(
            &file,
            "max_payload = \"64KiB\"\nqueue_limit = 4096\ncompression = false\n",
        )
        .unwrap();
        let args = Args::try_parse_from([
            "hubbub",
            "--config",
            file.to_str().unwrap(),
            "--max-payload",
            "2KiB",
        ])
        .unwrap();
        let c = Config::from_args(&args).unwrap();
        assert_eq!(c.max_payload, 2048);
        assert_eq!(c.queue_limit, 4096);
        assert_eq!(c.compression, None);
        assert_eq!(c.default_history, 100);
    }

    #[test]
    fn unknown_settings_and_bad_values_are_errors() {
        let mut m = BTreeMap::new();
        m.insert("max_paylod".to_string(), "1".to_string());
        assert!(Config::from_values(&m).is_err());
        let mut m = BTreeMap::new();
        m.insert("max_payload".to_string(), "huge".to_string());
        let e = Config::from_values(&m).unwrap_err().to_string();
        assert!(e.contains("max_payload"), "{e}");
    }

    #[test]
    fn the_admin_ui_with_auth_needs_an_argon2_hash() {
        let values = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let e = Config::from_values(&values(&[("admin_ui", "on")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("admin_password"), "{e}");
        let plain = values(&[("admin_ui", "on"), ("admin_password", "hunter2")]);
        assert!(Config::from_values(&plain).is_err());
        let hash = "$argon2id$v=19$m=8192,t=1,p=1$RnbbI+0IzQJsA1jLEPhPbg$tw98Bkg9yt+gRWQYlQ1FKO4PfAKhNclbGpJCPpiS47U";
        let on = Config::from_values(&values(&[("admin_ui", "on"), ("admin_password", hash)]));
        assert_eq!(on.unwrap().admin_ui, AdminUi::On);
        let open = Config::from_values(&values(&[("admin_ui", "open")])).unwrap();
        assert_eq!(open.admin_ui, AdminUi::Open);
        assert!(Config::from_values(&values(&[("admin_ui", "maybe")])).is_err());
    }
}
