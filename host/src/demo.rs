//! `eventsift demo`: the whole pipeline on one machine, no Kafka or HDFS.
//! Starts `serve` (API + writer on the embedded log) with the bundled
//! plugins on a temporary warehouse, replays the seed's generate_data.sh
//! through the HTTP API, drops `spellbook.wasm` in while it runs, sends
//! spellbook events, waits for the commit and prints the classic stack's
//! two queries and spellbooks by school.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::config::Config;
use crate::loadgen::{self, Load, Request};
use crate::query::output::{Format, render};
use crate::transport::AnyTransport;

/// The classic pipeline's two queries, as written there.
pub const HORSES_BY_SIZE: &str = "SELECT size AS horse_size, SUM(CAST(quantity AS INTEGER)) AS num_horses FROM horse_purchases GROUP BY 1";
pub const SWORDS_BY_YEAR: &str = "SELECT year, sum(n) AS num_swords FROM (SELECT YEAR(timestamp) AS year, CAST(quantity AS INTEGER) AS n FROM sword_purchases) GROUP BY year";
pub const SPELLBOOKS_BY_SCHOOL: &str = "SELECT school, COUNT(*) AS purchases, SUM(quantity) AS spellbooks FROM spellbook_purchases GROUP BY school ORDER BY school";

const SEED_PLUGINS: &[&str] = &["sword.wasm", "horse.wasm", "guild.wasm", "default.wasm"];

/// Spellbook purchases the demo sends: (school, quantity, how many).
const SPELLBOOKS: &[(&str, u32, usize)] = &[
    ("fire", 1, 10),
    ("ice", 2, 6),
    ("arcane", 1, 5),
    ("nature", 3, 3),
];

fn copy_plugin(from: &Path, to_dir: &Path, name: &str) -> Result<()> {
    let src = from.join(name);
    let tmp = to_dir.join(format!(".{name}.tmp"));
    std::fs::copy(&src, &tmp).with_context(|| {
        format!(
            "cannot copy {} (build the plugins first: cargo xtask plugins)",
            src.display()
        )
    })?;
    std::fs::rename(&tmp, to_dir.join(name))?;
    Ok(())
}

/// Runs the demo; `plugins` holds the bundled `.wasm` files.
pub fn run(plugins: &Path, keep: Option<PathBuf>) -> Result<()> {
    for name in SEED_PLUGINS.iter().chain(&["spellbook.wasm"]) {
        if !plugins.join(name).is_file() {
            bail!(
                "{} is missing: build the bundled plugins first (cargo xtask plugins)",
                plugins.join(name).display()
            );
        }
    }
    let root = match keep {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            dir
        }
        None => tempfile::Builder::new()
            .prefix("eventsift-demo-")
            .tempdir()?
            .keep(),
    };
    let plugin_dir = root.join("plugins");
    std::fs::create_dir_all(&plugin_dir)?;
    for name in SEED_PLUGINS {
        copy_plugin(plugins, &plugin_dir, name)?;
    }
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        plugins: plugin_dir.clone(),
        data_dir: root.join("data"),
        warehouse: root.join("warehouse").to_string_lossy().into_owned(),
        flush_interval: Duration::from_secs(1),
        ..Config::default()
    };
    let started = Instant::now();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        println!("eventsift demo: serve on the embedded log, warehouse {}", config.warehouse);
        let serve = crate::daemon::Serve::start(&config).await?;
        let AnyTransport::Embedded(log) = &*serve.transport else {
            bail!("the demo runs on the embedded log");
        };
        let log = log.clone();
        // The watcher loads files once they are 500 ms old.
        let deadline = Instant::now() + Duration::from_secs(30);
        while serve.plugins.registry.snapshot().len() < SEED_PLUGINS.len() {
            if Instant::now() > deadline {
                bail!("the bundled plugins did not load");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let base = format!("http://{}", serve.api.addr);

        // The seed's load; spellbook.wasm is dropped in half way.
        let requests = Arc::new(loadgen::seed_requests());
        let half = requests.len() as u64 / 2;
        let dropped = Arc::new(AtomicBool::new(false));
        let on_progress = {
            let (dropped, from, to) = (dropped.clone(), plugins.to_path_buf(), plugin_dir.clone());
            Arc::new(move |n: u64| {
                if n >= half && !dropped.swap(true, Ordering::SeqCst) {
                    let _ = copy_plugin(&from, &to, "spellbook.wasm");
                }
            }) as Arc<dyn Fn(u64) + Send + Sync>
        };
        println!("replaying generate_data.sh: {} requests with their Host headers", requests.len());
        let load = Load {
            target: base.clone(),
            rate: None,
            duration: None,
            clients: 16,
            progress: true,
            until_acked: None,
            on_reply: None,
            batch: None,
        };
        let summary = loadgen::run(&load, Some(requests), on_progress).await?;
        print!("{}", summary.report());
        if summary.ok != summary.sent {
            bail!("some seed requests failed: {}", summary.report());
        }

        // Spellbook events, once its route is up.
        println!("spellbook.wasm dropped in during the load; waiting for its route");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if serve.plugins.registry.get("purchase_spellbook").is_some() {
                break;
            }
            if Instant::now() > deadline {
                bail!("the spellbook plugin did not load");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let books: Vec<Request> = SPELLBOOKS
            .iter()
            .flat_map(|&(school, q, n)| {
                (0..n).map(move |i| Request {
                    method: "POST",
                    host: format!("mage{i}.example.com"),
                    path: format!("/purchase_a_spellbook/{school}/{q}"),
                })
            })
            .collect();
        let load = Load {
            progress: false,
            ..load
        };
        let summary = loadgen::run(&load, Some(Arc::new(books)), Arc::new(|_| {})).await?;
        println!("sent {} spellbook purchases ({} accepted)", summary.sent, summary.ok);

        // Wait for the writer to commit everything the log holds.
        let end = log.end_offset() as i64;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let committed = serve.writer.status.committed.lock().unwrap().get(&0).copied();
            if committed.is_some_and(|c| c >= end) {
                break;
            }
            if Instant::now() > deadline {
                bail!("the writer did not commit within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serve.stop().await?;

        let wh = crate::query::Warehouse::open(&config.warehouse).await?;
        for (title, sql, ordered) in [
            ("Horses by size", HORSES_BY_SIZE, false),
            ("Swords by year", SWORDS_BY_YEAR, false),
            ("Spellbooks by school", SPELLBOOKS_BY_SCHOOL, true),
        ] {
            println!("\n{title}:\n  {sql}");
            // Sorted for a stable display; the queries themselves run as written.
            let run = if ordered {
                sql.to_owned()
            } else {
                format!("SELECT * FROM ({sql}) ORDER BY 1")
            };
            let batches = wh.sql(&run).await?;
            print!("{}", render(&batches, Format::Table)?);
        }
        println!(
            "\ndone in {:.1} s. Query it yourself:\n  eventsift query --warehouse {} \"SELECT * FROM guild_actions LIMIT 5\"",
            started.elapsed().as_secs_f64(),
            config.warehouse
        );
        Ok(())
    })
}
