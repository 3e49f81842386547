//! The checks of a connector manifest that serde cannot make: pointers, templates and
//! their variables, stream references, paging and auth settings, write declarations.
//! Every problem is reported with the manifest's file and key path.

use super::diag::{Diagnostics, join};
use super::manifest::{AuthKind, BUILTIN_VARIABLES, Manifest, template_variables};
use super::manifest_spec::{Pagination, ParamIn, RequestSpec, ResumeMode, StateUse, check_body_key, check_pointer};
use crate::model::EntityName;

impl Manifest {
    /// Checks what serde cannot: pointers, templates, stream references, auth settings.
    pub(super) fn check_shape(&self, diag: &mut Diagnostics) {
        let file = self.source.as_str();
        let mut err = |path: &str, msg: String| diag.push(file, path, msg);
        if self.streams.is_empty() {
            err("streams", "a connector needs at least one stream".into());
        }
        if !(self.base_url.starts_with("http://")
            || self.base_url.starts_with("https://")
            || self.base_url.starts_with('{'))
        {
            err("base_url", format!("`{}` is not an http(s) URL template", self.base_url));
        }
        if self.max_response_bytes == Some(0) {
            err("max_response_bytes", "must be greater than zero".into());
        }
        if let Some(w) = &self.webhooks {
            let has_entity = |e: &EntityName| self.streams.values().any(|s| &s.entity == e);
            for (path, msg) in w.problems(&|s| self.streams.contains_key(s), &has_entity) {
                err(&path, msg);
            }
        }
        let credentials = self.auth.required_credentials();
        if credentials.is_empty() {
            err("auth.credentials", "list at least one credential field".into());
        }
        let known = |var: &str, in_auth: bool, parent: bool| -> bool {
            BUILTIN_VARIABLES.contains(&var)
                || self.variables.contains_key(var)
                || self.auth.provides.iter().any(|p| p == var)
                || self.tenant_variables().iter().any(|v| v == var)
                || (in_auth && credentials.iter().any(|c| c == var))
                || (parent && var.starts_with("parent."))
        };
        if let Some(msg) = unclosed_placeholder(&self.base_url) {
            err("base_url", msg);
        }
        if let Some(rate) = &self.rate_limit {
            for (key, value) in [("requests", rate.requests), ("per_secs", rate.per_secs)] {
                if value == 0 {
                    err(&join("rate_limit", key), "must be greater than zero".into());
                }
            }
            if let Some(max) = rate.max_requests
                && max < rate.requests
            {
                err("rate_limit.max_requests", format!("{max} is below `requests` ({})", rate.requests));
            }
        }
        if let Some(retry) = &self.retry {
            if retry.max_attempts == Some(0) {
                err("retry.max_attempts", "must be at least 1".into());
            }
            if retry.max_backoff_secs == Some(0) {
                err("retry.max_backoff_secs", "must be at least 1".into());
            }
        }
        for (key, t) in self.auth.templates() {
            if let Some(msg) = unclosed_placeholder(t) {
                err(&join("auth", key), msg);
            }
            for var in template_variables(t) {
                if !known(&var, true, false) {
                    err(&join("auth", key), format!("unknown template variable `{{{var}}}`"));
                }
            }
        }
        for (name, t) in &self.headers {
            check_template_vars(t, &|v| known(v, false, false), &join("headers", name), &mut err);
        }
        if self.auth.needs_token() && self.auth.token_url.is_none() {
            err("auth.token_url", format!("`{}` auth needs a `token_url`", self.auth.kind.as_str()));
        }
        if self.auth.kind == AuthKind::Basic
            && (self.auth.username.is_none() || self.auth.password.is_none())
            && self.auth.credentials.is_some()
        {
            err("auth", "basic auth with custom credential fields needs `username` and `password` templates".into());
        }
        if self.auth.kind == AuthKind::JwtExchange {
            match self.auth.jwt_ttl_secs {
                Some(t) if t == 0 || t > super::manifest::JWT_MAX_TTL_SECS => err(
                    "auth.jwt_ttl_secs",
                    format!("must be between 1 and {} seconds", super::manifest::JWT_MAX_TTL_SECS),
                ),
                _ => {}
            }
            let key = self.auth.jwt_key.as_deref().unwrap_or("private_key");
            if !credentials.iter().any(|c| c == key) {
                err("auth.jwt_key", format!("`{key}` is not one of the credentials ({})", credentials.join(", ")));
            }
        } else {
            for (key, set) in [
                ("auth.jwt_issuer", self.auth.jwt_issuer.is_some()),
                ("auth.jwt_key", self.auth.jwt_key.is_some()),
                ("auth.jwt_ttl_secs", self.auth.jwt_ttl_secs.is_some()),
            ] {
                if set {
                    err(key, "only `jwt_exchange` auth signs a JWT".into());
                }
            }
        }
        for (key, p) in [
            ("auth.expires_at_path", &self.auth.expires_at_path),
            ("auth.token_path", &self.auth.token_path),
            ("auth.expires_in_path", &self.auth.expires_in_path),
            ("auth.refresh_token_path", &self.auth.refresh_token_path),
        ] {
            if let Some(p) = p
                && let Err(e) = check_pointer(p)
            {
                err(key, e);
            }
        }
        for (i, rule) in self.responses.iter().enumerate() {
            let path = format!("responses[{i}]");
            for p in rule.body.keys() {
                if let Err(e) = check_body_key(p) {
                    err(&join(&path, "body"), e);
                }
            }
            for p in rule.message.iter() {
                if let Err(e) = check_pointer(p) {
                    err(&join(&path, "message"), e);
                }
            }
        }
        for (name, s) in &self.streams {
            let sp = join("streams", name.as_str());
            let is_child = s.parent.is_some();
            if let Some(parent) = &s.parent {
                match self.streams.get(parent) {
                    None => err(&join(&sp, "parent"), format!("unknown parent stream `{parent}`")),
                    Some(_) if parent == name => err(&join(&sp, "parent"), "a stream cannot be its own parent".into()),
                    // A parent may itself be a child (Graph channels of teams, parents of
                    // their messages), one level deep.
                    Some(p)
                        if p.parent.as_ref().and_then(|g| self.streams.get(g)).is_some_and(|g| g.parent.is_some()) =>
                    {
                        err(&join(&sp, "parent"), "a parent's parent stream cannot itself be a child".into())
                    }
                    Some(_) => {}
                }
            }
            if s.request.path.is_none() {
                err(&join(&sp, "request.path"), "a stream needs a request path".into());
            }
            let known_here = |v: &str| known(v, false, is_child);
            check_request(&s.request, &known_here, &join(&sp, "request"), &mut err);
            for (k, t) in &s.inject {
                check_template_vars(t, &known_here, &join(&join(&sp, "inject"), k), &mut err);
            }
            if let Some(inc) = &s.incremental {
                let ip = join(&sp, "incremental");
                let merged = s.request.overlay(&inc.request);
                // What the incremental section states is checked at its own key path;
                // what it inherits was checked above. Only problems of the combination
                // (paging into a body it no longer has) are reported here in addition.
                check_request_fields(&inc.request, &known_here, &join(&ip, "request"), &mut err);
                if !inc.request.first_page_only.is_empty() || !inc.request.later_pages_only.is_empty() {
                    check_page_only(&merged, &join(&ip, "request"), &mut err);
                }
                if let Some(msg) = body_paging_error(&merged)
                    && body_paging_error(&s.request).is_none()
                {
                    err(&join(&join(&ip, "request"), "pagination"), msg);
                }
                if !inc.client_side && !uses_cursor(&merged) {
                    err(&join(&ip, "request"), "the incremental request never uses `{cursor}`".into());
                }
                if inc.cursor_field.trim().is_empty() {
                    err(&join(&ip, "cursor_field"), "must not be empty".into());
                }
            }
            if let Some(st) = &s.state {
                let stp = join(&sp, "state");
                if s.incremental.is_some() {
                    err(
                        &stp,
                        "a stream keeps either a state from the response or an `incremental` cursor, not both".into(),
                    );
                }
                if s.deletions {
                    err(
                        &stp,
                        "a deletion stream cannot keep a state (use `tombstone` on the stream that reads the entity)"
                            .into(),
                    );
                }
                for (key, p) in [("from", Some(&st.from)), ("record", st.record.as_ref())] {
                    if let Some(p) = p
                        && let Err(e) = check_pointer(p)
                    {
                        err(&join(&stp, key), e);
                    }
                }
                let merged = s.request.overlay(&st.request);
                check_request_fields(&st.request, &known_here, &join(&stp, "request"), &mut err);
                if !st.request.first_page_only.is_empty() || !st.request.later_pages_only.is_empty() {
                    check_page_only(&merged, &join(&stp, "request"), &mut err);
                }
                match st.use_as {
                    StateUse::Param if !uses_var(&merged, "state") => err(
                        &join(&stp, "request"),
                        "`use = \"param\"` but the state request never uses `{state}`".into(),
                    ),
                    StateUse::Url if st.request.path.is_some() => err(
                        &join(&join(&stp, "request"), "path"),
                        "with `use = \"url\"` the state is the URL requested; a path is never used".into(),
                    ),
                    _ => {}
                }
                if let Some(init) = &st.init {
                    let ip = join(&stp, "init");
                    if init.request.path.is_none() {
                        err(&join(&join(&ip, "request"), "path"), "the init request needs a path".into());
                    }
                    check_request_fields(&init.request, &known_here, &join(&ip, "request"), &mut err);
                    if let Some(p) = &init.from
                        && let Err(e) = check_pointer(p)
                    {
                        err(&join(&ip, "from"), e);
                    }
                }
                if st.init_only && st.init.is_none() {
                    err(
                        &join(&stp, "init_only"),
                        "a full pass that only takes the first state needs `init` to take it from".into(),
                    );
                }
                for (i, other) in st.expired_full_pass.iter().enumerate() {
                    let key = format!("{}[{i}]", join(&stp, "expired_full_pass"));
                    let found = self.streams.iter().find(|(k, _)| k.as_str() == other.as_str());
                    match found {
                        None => {
                            let known = self.streams.keys().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
                            err(&key, format!("unknown stream `{other}` (known: {known})"));
                        }
                        Some((k, _)) if k == name => {
                            err(&key, "a stream whose state expired reads itself in full already".into())
                        }
                        Some((_, o)) if o.deletions || o.entity != s.entity => err(
                            &key,
                            format!(
                                "`{other}` must read `{}` normally (not a deletion stream, not another entity): \
                                 its sweep finds what this stream missed",
                                s.entity
                            ),
                        ),
                        Some((_, o)) if o.state.as_ref().is_some_and(|st| st.init_only) => err(
                            &key,
                            format!("`{other}` only takes a first state (`init_only`): its full pass lists nothing"),
                        ),
                        Some(_) => {}
                    }
                }
                if let Some(x) = &st.expired {
                    let xp = join(&stp, "expired");
                    if x.status.is_empty() && x.body.is_empty() {
                        err(&xp, "name at least one `status` or `body` field".into());
                    }
                    for p in x.body.keys() {
                        if let Err(e) = check_body_key(p) {
                            err(&join(&xp, "body"), e);
                        }
                    }
                }
            } else if uses_var(&s.request, "state") {
                err(&join(&sp, "request"), "`{state}` is only known to a stream with a `state` section".into());
            }
            if let Some(t) = &s.tombstone {
                let tp = join(&sp, "tombstone");
                for (key, p) in [("when", Some(&t.when)), ("key", t.key.as_ref())] {
                    if let Some(p) = p
                        && let Err(e) = check_pointer(p)
                    {
                        err(&join(&tp, key), e);
                    }
                }
                if t.when.is_empty() {
                    err(&join(&tp, "when"), "must point into the item, not be the whole item".into());
                }
                if s.deletions {
                    err(
                        &tp,
                        "a deletion stream's records are all deletions; `tombstone` is for streams of records".into(),
                    );
                }
            }
            if s.resume == Some(ResumeMode::Cursor) && !s.incremental.as_ref().is_some_and(|i| i.sorted) {
                err(
                    &join(&sp, "resume"),
                    "`cursor` resumes only a sorted incremental read (`incremental.sorted = true`); \
                     use `position` or `none`"
                        .into(),
                );
            }
            if s.deletions
                && !self.streams.iter().any(|(other, o)| other != name && !o.deletions && o.entity == s.entity)
            {
                err(
                    &join(&sp, "deletions"),
                    format!(
                        "a deletion stream needs a stream of the provider that reads `{}` normally \
                         (one without `deletions = true`)",
                        s.entity
                    ),
                );
            }
            for (key, value) in [
                ("position_ttl_secs", s.position_ttl_secs),
                ("max_pages_per_run", s.max_pages_per_run),
                ("max_run_secs", s.max_run_secs),
            ] {
                if value == Some(0) {
                    err(&join(&sp, key), "must be at least 1".into());
                }
            }
        }
    }

    /// Checks the `[writes.*]` declarations: a known entity, well-formed requests whose
    /// placeholders name the entity's fields or the manifest's variables. (Whether the
    /// entity's mapping can be reversed is checked with the mappings, in every layer.)
    pub(super) fn check_writes(&self, entities: &super::entities::Entities, diag: &mut Diagnostics) {
        let variables = self.tenant_variables();
        for (entity, spec) in &self.writes {
            let at = join("writes", entity);
            let Some(def) = entities.get(entity) else {
                diag.push(&self.source, &at, format!("unknown entity `{entity}` (known: {})", entities.names()));
                continue;
            };
            let known = |name: &str| {
                def.field(name).is_some()
                    || name == "text"
                    || variables.iter().any(|v| v == name)
                    || BUILTIN_VARIABLES.contains(&name)
            };
            for (key, msg) in spec.problems(&known) {
                let path = if key.is_empty() { at.clone() } else { join(&at, &key) };
                diag.push(&self.source, &path, msg);
            }
        }
    }
}

fn uses_cursor(r: &RequestSpec) -> bool {
    uses_var(r, "cursor")
}

fn uses_var(r: &RequestSpec, var: &str) -> bool {
    let mut texts: Vec<String> = r.query.values().cloned().collect();
    texts.extend(r.path.clone());
    texts.extend(r.headers.values().cloned());
    if let Some(b) = &r.body {
        texts.extend(json_strings(b).into_iter().map(str::to_owned));
    }
    texts.iter().any(|t| template_variables(t).iter().any(|v| v == var))
}

/// Every string inside a JSON value (templates live in strings only).
fn json_strings(v: &serde_json::Value) -> Vec<&str> {
    match v {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(a) => a.iter().flat_map(json_strings).collect(),
        serde_json::Value::Object(m) => m.values().flat_map(json_strings).collect(),
        _ => Vec::new(),
    }
}

/// A `{` without its closing `}`: such a template would send the brace literally.
fn unclosed_placeholder(t: &str) -> Option<String> {
    let start = t.rfind('{')?;
    (!t[start..].contains('}')).then(|| format!("unclosed `{{` in template `{t}`"))
}

fn check_template_vars(t: &str, known: &dyn Fn(&str) -> bool, path: &str, err: &mut impl FnMut(&str, String)) {
    if let Some(msg) = unclosed_placeholder(t) {
        err(path, msg);
    }
    for var in template_variables(t) {
        if var.is_empty() {
            err(path, "empty `{}` placeholder".into());
        } else if !known(&var) {
            err(path, format!("unknown template variable `{{{var}}}`"));
        }
    }
}

fn check_request(r: &RequestSpec, known: &dyn Fn(&str) -> bool, path: &str, err: &mut impl FnMut(&str, String)) {
    check_request_fields(r, known, path, err);
    check_page_only(r, path, err);
    if let Some(msg) = body_paging_error(r) {
        err(&join(path, "pagination"), msg);
    }
}

/// `first_page_only` / `later_pages_only` name parameters the request has (in `r`, the
/// request as sent: a section's overlay on the stream's), each in one list at most.
fn check_page_only(r: &RequestSpec, path: &str, err: &mut impl FnMut(&str, String)) {
    let in_body = |name: &str| r.body.as_ref().and_then(|b| b.get(name)).is_some();
    for (key, names) in [("first_page_only", &r.first_page_only), ("later_pages_only", &r.later_pages_only)] {
        for name in names {
            if !r.query.contains_key(name) && !in_body(name) {
                err(&join(path, key), format!("`{name}` is not a query parameter or body field of the request"));
            }
        }
    }
    for name in r.first_page_only.iter().filter(|n| r.later_pages_only.contains(n)) {
        err(&join(path, "later_pages_only"), format!("`{name}` is also in `first_page_only`"));
    }
}

/// Paging parameters that go into a body the request does not have.
fn body_paging_error(r: &RequestSpec) -> Option<String> {
    let in_body = matches!(
        &r.pagination,
        Some(
            Pagination::Cursor { location: ParamIn::Body, .. }
                | Pagination::Offset { location: ParamIn::Body, .. }
                | Pagination::PageNumber { location: ParamIn::Body, .. }
        )
    );
    (in_body && r.body.is_none())
        .then(|| "paging parameters go in the body (`in = \"body\"`) but the request has no `body`".to_owned())
}

/// Checks the fields a request spec states: templates, pointers, page sizes.
fn check_request_fields(r: &RequestSpec, known: &dyn Fn(&str) -> bool, path: &str, err: &mut impl FnMut(&str, String)) {
    if let Some(p) = &r.path {
        check_template_vars(p, known, &join(path, "path"), err);
    }
    for (k, v) in &r.query {
        check_template_vars(v, known, &join(&join(path, "query"), k), err);
    }
    for (k, v) in &r.headers {
        check_template_vars(v, known, &join(&join(path, "headers"), k), err);
    }
    if let Some(b) = &r.body {
        for t in json_strings(b) {
            check_template_vars(t, known, &join(path, "body"), err);
        }
    }
    if let Some(rec) = &r.records
        && let Err(e) = check_pointer(rec)
    {
        err(&join(path, "records"), e);
    }
    if let Some(total) = &r.total
        && let Err(e) = check_pointer(total)
    {
        err(&join(path, "total"), e);
    }
    let pp = join(path, "pagination");
    let pointers: Vec<(&str, &String)> = match &r.pagination {
        Some(Pagination::Cursor { cursor, is_last, has_more, .. }) => {
            let mut v = vec![("cursor", cursor)];
            v.extend(is_last.iter().map(|p| ("is_last", p)));
            v.extend(has_more.iter().map(|p| ("has_more", p)));
            v
        }
        Some(Pagination::NextUrl { next, done, has_more, .. }) => {
            let mut v = vec![("next", next)];
            v.extend(done.iter().map(|p| ("done", p)));
            v.extend(has_more.iter().map(|p| ("has_more", p)));
            v
        }
        Some(Pagination::Offset { total, is_last, has_more, .. }) => total
            .iter()
            .map(|p| ("total", p))
            .chain(is_last.iter().map(|p| ("is_last", p)))
            .chain(has_more.iter().map(|p| ("has_more", p)))
            .collect(),
        Some(Pagination::PageNumber { total, has_more, .. }) => {
            total.iter().map(|p| ("total", p)).chain(has_more.iter().map(|p| ("has_more", p))).collect()
        }
        _ => Vec::new(),
    };
    for (k, p) in pointers {
        if let Err(e) = check_pointer(p) {
            err(&join(&pp, k), e);
        }
    }
    match &r.pagination {
        Some(
            Pagination::Offset { limit: 0, .. }
            | Pagination::Odata { limit: 0, .. }
            | Pagination::PageNumber { size: 0, .. },
        ) => {
            err(&pp, "the page size must be greater than zero".into());
        }
        Some(p) if p.max_pages() == Some(0) => err(&join(&pp, "max_pages"), "must be greater than zero".into()),
        _ => {}
    }
    if let Some(Pagination::NextHeader { header, param, .. }) = &r.pagination {
        if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
            err(&join(&pp, "header"), format!("`{header}` is not an HTTP header name"));
        }
        if param.trim().is_empty() {
            err(&join(&pp, "param"), "must not be empty".into());
        }
    }
}
