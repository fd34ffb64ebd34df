//! A shard: one thread with its own single-threaded runtime, its own `SO_REUSEPORT` listener
//! (the kernel spreads connections over shards; no cross-thread hand-off at accept), its
//! reactor of connections, its hub, and the loops that serve them: accept, the backplane's
//! inbox, upgraded sockets handed off, the sweep, and the drain at shutdown.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::LocalSet;
use wsgate_protocol::CloseCode;

use super::connection::Connection;
use super::engineio::App;
use super::sweep;
use crate::cluster::ShardMsg;
use crate::engineio::Engine;
use crate::node::polling::PollRequest;
use crate::node::{Ctx, Handoff, Shared};
use crate::reactor::Reactor;
use crate::transport::outbound::{CloseRequest, Queued};

/// Starts shard `id` on its own thread, serving `listener` until shutdown.
pub(crate) fn spawn(
    id: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    queues: (
        mpsc::UnboundedReceiver<Handoff>,
        mpsc::UnboundedReceiver<PollRequest>,
    ),
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("wsgate-shard-{id}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(shard = id, error = %e, "cannot build the shard runtime");
                    return;
                }
            };
            let reactor = match Reactor::new() {
                Ok(reactor) => Rc::new(reactor),
                Err(e) => {
                    tracing::error!(shard = id, error = %e, "cannot create the shard's reactor");
                    return;
                }
            };
            let ctx = Ctx::new(id, shared);
            LocalSet::new().block_on(&runtime, run(&ctx, &reactor, listener, queues));
            // Connections still open past the shutdown deadline close with their sockets.
            reactor.drop_all();
        })
}

async fn run(
    ctx: &Rc<Ctx>,
    reactor: &Rc<Reactor<Connection>>,
    listener: std::net::TcpListener,
    (handoffs, polls): (
        mpsc::UnboundedReceiver<Handoff>,
        mpsc::UnboundedReceiver<PollRequest>,
    ),
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(shard = ctx.shard, error = %e, "cannot register the listener");
            return;
        }
    };
    tokio::task::spawn_local(reactor.clone().run());
    tokio::task::spawn_local(inbox_loop(ctx.clone()));
    let engine = Engine::<App>::new(ctx.clone());
    tokio::task::spawn_local(engine.clone().run(polls));
    tokio::task::spawn_local(adopt_loop(ctx.clone(), reactor.clone(), engine, handoffs));
    tokio::task::spawn_local(sweep::run(ctx.clone()));
    let mut shutdown = ctx.shared.shutdown.clone();
    // Until shutdown, and while connections drain after it, HTTP is still answered: `/readyz`
    // says false and upgrades get 503 `server.shutting_down`. The listener closes with the drain.
    tokio::select! {
        () = accept_loop(ctx, &listener) => {}
        () = async {
            shutdown.wait().await;
            drain(ctx).await;
        } => {}
    }
}

async fn accept_loop(ctx: &Rc<Ctx>, listener: &TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::task::spawn_local(crate::http::serve(ctx.clone(), stream));
            }
            Err(e) => {
                // Out of file descriptors or memory: back off and keep serving, never crash.
                if is_resource_exhaustion(&e) {
                    tracing::warn!(shard = ctx.shard, error = %e, "accept failed; backing off 50 ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                } else {
                    tracing::debug!(shard = ctx.shard, error = %e, "accept failed");
                }
            }
        }
    }
}

fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Takes upgraded sockets into the reactor, as connections (an Engine.IO one with the shard's
/// engine, whose sessions it may take over).
async fn adopt_loop(
    ctx: Rc<Ctx>,
    reactor: Rc<Reactor<Connection>>,
    engine: Rc<Engine<App>>,
    mut handoffs: mpsc::UnboundedReceiver<Handoff>,
) {
    while let Some(handoff) = handoffs.recv().await {
        reactor.adopt(|wake| Connection::new(ctx.clone(), &engine, handoff, wake));
    }
}

/// Delivers what other shards send; yields every 256 messages so connections keep running.
async fn inbox_loop(ctx: Rc<Ctx>) {
    let backplane = &ctx.shared.backplane;
    loop {
        backplane.wait_ready(ctx.shard).await;
        let mut n = 0u32;
        while let Some(msg) = backplane.pop(ctx.shard) {
            match msg {
                ShardMsg::Deliver(d) => {
                    ctx.hub.deliver_local(&d);
                }
                ShardMsg::Run(task) => {
                    crate::panic::contain(ctx.stats(), ctx.shard, "a shard task", || {
                        task(&ctx.hub)
                    });
                }
                ShardMsg::Join(ticket) => {
                    crate::panic::contain(ctx.stats(), ctx.shard, "a join", || {
                        ctx.hub.complete_join(ticket)
                    });
                }
            }
            n += 1;
            if n.is_multiple_of(256) {
                backplane.drained(ctx.shard);
                tokio::task::yield_now().await;
            }
        }
        backplane.drained(ctx.shard);
    }
}

/// Graceful shutdown of one shard: close everyone with 1001 after flushing, then wait for the
/// connections to finish, up to the shutdown deadline.
async fn drain(ctx: &Ctx) {
    ctx.hub.for_each_session(|s| {
        s.close(CloseRequest::new(CloseCode::GoingAway), Queued::Flush);
    });
    let deadline = Instant::now() + ctx.config().shutdown_timeout;
    while ctx.hub.session_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = ctx.hub.session_count();
    if left > 0 {
        tracing::warn!(
            shard = ctx.shard,
            connections = left,
            "shutdown deadline passed; dropping"
        );
    }
}
