//! The plugin routes of the current registry snapshot, rebuilt when the
//! snapshot changes (hot reload), matched with `matchit`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::http::Method;
use percent_encoding::percent_decode_str;

use crate::plugin::{LoadedPlugin, Snapshot};

/// Caches the table of the latest snapshot generation.
#[derive(Default)]
pub struct RouteTable {
    current: RwLock<Option<Arc<Routes>>>,
}

impl RouteTable {
    /// The routes of `snapshot`, rebuilt if its generation is new.
    pub fn current(&self, snapshot: &Snapshot) -> Arc<Routes> {
        if let Some(r) = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && r.generation == snapshot.generation
        {
            return r.clone();
        }
        let routes = Arc::new(Routes::build(snapshot));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(routes.clone());
        routes
    }
}

pub struct Routes {
    generation: u64,
    by_method: HashMap<Method, matchit::Router<(Arc<LoadedPlugin>, Arc<str>)>>,
}

/// A matched route.
pub struct Found<'r, 'p> {
    pub plugin: Arc<LoadedPlugin>,
    /// `METHOD /template`, for metrics.
    pub label: Arc<str>,
    params: matchit::Params<'r, 'p>,
}

impl Found<'_, '_> {
    /// The path parameters as a JSON object of strings, percent-decoded.
    pub fn fields(&self) -> Result<String, String> {
        let mut out = String::with_capacity(64);
        out.push('{');
        for (i, (name, raw)) in self.params.iter().enumerate() {
            let value = percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| format!("path parameter {name} is not valid UTF-8"))?;
            if i > 0 {
                out.push(',');
            }
            super::envelope::push_str(&mut out, name);
            out.push(':');
            super::envelope::push_str(&mut out, &value);
        }
        out.push('}');
        Ok(out)
    }
}

impl Routes {
    /// The routes of `snapshot` (the API caches them in a [`RouteTable`]).
    pub fn build(snapshot: &Snapshot) -> Self {
        let mut by_method: HashMap<Method, matchit::Router<_>> = HashMap::new();
        for plugin in snapshot.plugins() {
            let Some(route) = &plugin.meta.route else {
                continue;
            };
            let Ok(method) = Method::from_bytes(route.method.as_bytes()) else {
                continue;
            };
            let label: Arc<str> = route.to_string().into();
            let router = by_method.entry(method).or_default();
            if let Err(e) = router.insert(route.path.clone(), (plugin.clone(), label)) {
                tracing::warn!(plugin = %plugin.meta.name, "route {route} not served: {e}");
            }
        }
        Routes {
            generation: snapshot.generation,
            by_method,
        }
    }

    /// The methods that have a route matching `path` (for 405's `Allow`).
    pub fn allowed(&self, path: &str) -> Vec<&Method> {
        let mut out: Vec<&Method> = self
            .by_method
            .iter()
            .filter(|(_, r)| r.at(path).is_ok())
            .map(|(m, _)| m)
            .collect();
        out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        out
    }

    pub fn find<'r, 'p>(&'r self, method: &Method, path: &'p str) -> Option<Found<'r, 'p>> {
        let m = self.by_method.get(method)?.at(path).ok()?;
        let (plugin, label) = m.value;
        Some(Found {
            plugin: plugin.clone(),
            label: label.clone(),
            params: m.params,
        })
    }
}
