//! The assembled server: the hub, the front ends, the services and the HTTP API built from
//! a [`Config`], and how they are served.
//!
//! [`Hubbub`] owns them. Its router can be merged into an application's own axum `Router`;
//! [`Hubbub::serve`] runs it with the heartbeat and the stats log, and on shutdown closes
//! every client with 1001, stops accepting, flushes and returns within `shutdown_timeout`.
//! `serve` holds the accept loop and what goes with it, `namespaces` the standalone
//! server's Socket.IO namespaces and their auth, `files` the pages and static files.

mod cluster;
mod files;
mod namespaces;
mod serve;

use std::sync::Arc;
use std::time::Duration;

use axum::{middleware, Router};

use crate::api::{self, ApiState};
use crate::auth::{self, Authenticator, Gate, Origins};
use crate::cluster::wire::Flavour;
use crate::cluster::{ClusterConfig, RedisAdapter, RedisStore};
use crate::config::{AdminUi, Config};
use crate::hub::{Hub, HubConfig};
use crate::limits::{AddressLimiter, RatePolicy};
use crate::services::admin::AdminAuth;
use crate::services::{ServiceSettings, Services};
use crate::sio::{SioConfig, SocketIo};
use crate::store::{sqlite::SqliteStore, Snapshot, Store};
use crate::ws::{self, WsConfig, WsState};
use namespaces::{install_token_refresh, standard_namespaces};

pub use crate::hub::REPLACED;
pub use serve::{bind, raise_fd_limit, shutdown_signal, FD_RESERVE, LISTEN_BACKLOG};

/// Hubbub's hub plus the front ends and API built on it.
#[derive(Clone, Debug)]
pub struct Hubbub {
    hub: Hub,
    config: Config,
    services: Services,
    ws: WsState,
    io: SocketIo,
    auth: Arc<Authenticator>,
    origins: Arc<Origins>,
    handshakes: Arc<AddressLimiter>,
    cluster: Option<Arc<RedisAdapter>>,
}

impl Hubbub {
    /// Builds the hub, the front ends and the services from `config`, opening the store it
    /// names (with `store = "sqlite"`, the default, the file `db` is created or read back:
    /// rooms, history, direct messages and notifications survive restarts).
    ///
    /// A store file that cannot be read or written does not stop the server: it logs why,
    /// and history rooms, direct messages and notifications answer `unavailable` until the
    /// file can be written again, while live delivery goes on.
    ///
    /// # Panics
    ///
    /// Never for the store; see [`Self::try_new`].
    pub fn new(config: Config) -> Self {
        Self::try_new(config).unwrap_or_else(|e| panic!("hubbub: {e}"))
    }

    /// Like [`Self::new`], returning what keeps the server from starting as an error.
    pub fn try_new(config: Config) -> Result<Self, String> {
        let (store, snapshot): (Option<Arc<dyn Store>>, Snapshot) = match config.store.as_str() {
            "sqlite" => {
                let (store, snapshot) = SqliteStore::open(&config.db);
                (Some(Arc::new(store)), snapshot)
            }
            // The cluster keeps rooms, history and notifications: read back once connected.
            "redis" => {
                let store = Arc::new(RedisStore::detached());
                return Ok(Self::build(
                    config,
                    Some(store.clone()),
                    Snapshot::default(),
                    Some(store),
                ));
            }
            _ => (None, Snapshot::default()),
        };
        Ok(Self::build(config, store, snapshot, None))
    }

    fn build(
        config: Config,
        store: Option<Arc<dyn Store>>,
        snapshot: Snapshot,
        redis_store: Option<Arc<RedisStore>>,
    ) -> Self {
        let hub = Hub::new(HubConfig {
            default_history: config.default_history,
            queue_limit: config.queue_limit,
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
            heartbeat_interval: config.heartbeat_interval,
            heartbeat_timeout: config.heartbeat_timeout,
            history_ttl: config.history_ttl,
            ..HubConfig::default()
        });
        let rate = RatePolicy {
            messages: config.rate_messages,
            bytes: config.rate_bytes,
        };
        let ws = WsState::new(
            hub.clone(),
            WsConfig {
                max_payload: config.max_payload,
                compression: config.compression,
                heartbeat_interval: config.heartbeat_interval,
                rate,
            },
        );
        let io = SocketIo::new(
            hub.clone(),
            SioConfig::default()
                .with_path(&config.socketio_path)
                .with_ping(config.heartbeat_interval, config.heartbeat_timeout)
                .with_max_payload(config.max_payload)
                .with_connect_timeout(config.connect_timeout)
                .with_rate(rate)
                .with_recovery(
                    (!config.socketio_recovery.is_zero()).then_some(config.socketio_recovery),
                ),
        );
        let auth = Arc::new(Authenticator::from_config_or_closed(&config));
        standard_namespaces(&io, &hub, &auth, &config.jwt_cookie);
        if auth.required() {
            install_token_refresh(&hub, &auth);
        }
        if config.single_session {
            // "Log in on a new device, log out the others."
            hub.on_connect(|hub, conn| {
                hub.close_others(conn, REPLACED, "replaced by a newer session");
            });
        }
        let services = Services::install(
            &hub,
            &io,
            &ServiceSettings {
                admin: match config.admin_ui {
                    AdminUi::Off => None,
                    AdminUi::Open => Some(None),
                    _ => Some(Some(AdminAuth {
                        username: config.admin_username.clone(),
                        password_hash: config.admin_password.clone().unwrap_or_default(),
                    })),
                },
                ..ServiceSettings::new(config.dm_history, config.history_ttl)
            },
            store.clone(),
            &snapshot,
        );
        let mut cluster = None;
        if config.adapter == "redis" {
            let mut namespaces: Vec<String> = io
                .namespaces()
                .iter()
                .map(|n| n.name().to_string())
                .collect();
            namespaces.sort();
            namespaces.dedup();
            let settings = ClusterConfig {
                redis_url: config.redis_url.clone(),
                namespaces,
                request_timeout: Duration::from_secs(5),
                heartbeat_interval: config.heartbeat_interval,
                keep_history: config.store == "redis",
                key: config.redis_key.clone(),
                flavour: if config.redis_pubsub == "sharded" {
                    Flavour::Sharded
                } else {
                    Flavour::Classic
                },
            };
            match RedisAdapter::start(&hub, settings) {
                Ok(a) => {
                    tracing::info!(
                        node = hub.node(),
                        "cluster node through {}",
                        config.redis_url
                    );
                    cluster::relay_node_acks(&a, &hub, &io);
                    cluster = Some(a);
                }
                Err(e) => tracing::error!("cluster: {e}"),
            }
        }
        let store = match (&cluster, config.store.as_str()) {
            (Some(a), "redis") => {
                // Rooms, history and notifications come from the cluster once connected.
                if let Some(s) = &redis_store {
                    s.attach(a.clone());
                }
                cluster::replicate_notifications(a, &services.notifications);
                if let Some(s) = store {
                    hub.set_store(s);
                }
                None
            }
            (None, "redis") => {
                // Not part of a cluster (it could not start): history stays unavailable.
                tracing::error!("store redis: no cluster to keep rooms and history in");
                if let Some(s) = store {
                    hub.set_store(s);
                }
                None
            }
            _ => store,
        };
        if let Some(store) = store {
            let n = hub.restore(snapshot.rooms, snapshot.margin);
            tracing::info!("store {}: {n} rooms restored", config.db.display());
            hub.set_store(store);
        }
        Self {
            hub,
            config: config.clone(),
            services,
            ws,
            io,
            auth,
            origins: Arc::new(Origins::from_config(&config)),
            handshakes: Arc::new(AddressLimiter::new(config.rate_handshakes_per_ip)),
            cluster,
        }
    }

    /// The gate in front of the WebSocket (`socketio: false`) or Socket.IO routes.
    fn gate(&self, socketio: bool) -> Gate {
        Gate {
            auth: self.auth.clone(),
            origins: self.origins.clone(),
            cookie: self.config.jwt_cookie.as_str().into(),
            socketio,
            handshakes: self.handshakes.clone(),
            hub: self.hub.clone(),
        }
    }

    /// The Socket.IO server: add namespaces and handlers with it.
    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    /// The Socket.IO routes only.
    pub fn sio_routes(&self) -> Router {
        self.io
            .routes()
            .layer(middleware::from_fn_with_state(self.gate(true), auth::gate))
    }

    /// The hub handle: clone it to emit from any task.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The Redis adapter, when this server is one node of a cluster (`adapter = "redis"`):
    /// `serverSideEmit` to the other servers with it.
    pub fn cluster(&self) -> Option<&Arc<RedisAdapter>> {
        self.cluster.as_ref()
    }

    /// The configuration this server was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The WebSocket routes only (`/ws`, `/ws/{user}`, `/ws/echo`), for mounting under a
    /// prefix with `Router::nest`.
    pub fn ws_routes(&self) -> Router {
        ws::routes(self.ws.clone())
            .layer(middleware::from_fn_with_state(self.gate(false), auth::gate))
    }

    /// The GraphQL route (`/graphql`): GraphQL over WebSocket, whose credentials may also
    /// come in `connection_init`.
    pub fn graphql_routes(&self) -> Router {
        let state = crate::graphql::GraphqlState::new(
            self.ws.clone(),
            self.auth.clone(),
            crate::graphql::schema::Services {
                hub: self.hub.clone(),
                notifications: Some(self.services.notifications.clone()),
            },
            crate::graphql::GraphqlConfig {
                max_payload: self.config.max_payload,
                max_subscriptions: self.config.graphql_max_subscriptions,
                ..crate::graphql::GraphqlConfig::default()
            },
        );
        // As for Socket.IO, a request without credentials passes the gate: they may come
        // inside the protocol.
        crate::graphql::routes(state)
            .layer(middleware::from_fn_with_state(self.gate(true), auth::gate))
    }

    /// The services (notifications, the seeds' chat).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The HTTP API, metrics and health routes.
    pub fn api_routes(&self) -> Router {
        api::routes(ApiState {
            hub: self.hub.clone(),
            notifications: self.services.notifications.clone(),
            api_key: self.config.api_key.clone(),
            max_payload: self.config.max_payload,
        })
    }

    /// Everything: the index page, the WebSocket and Socket.IO routes, the API, the
    /// Socket.IO client script (with `socketio_client_dir`) and the files of `static_dir`.
    pub fn router(&self) -> Router {
        let app = Router::new()
            .route("/", files::index(&self.config))
            .merge(files::assets())
            .merge(self.ws_routes())
            .merge(self.sio_routes())
            .merge(self.graphql_routes())
            .merge(self.api_routes());
        let app = match &self.config.socketio_client_dir {
            Some(dir) => app.merge(files::socketio_client(&self.config.socketio_path, dir)),
            None => app,
        };
        match &self.config.static_dir {
            Some(dir) => files::with_static_dir(app, dir),
            None => app,
        }
    }
}
