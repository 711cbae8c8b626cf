//! The seam both HTTP adapters share, driven through a plain request view:
//! who a request is, what it costs, what it is answered, and which header
//! fields the answer carries — the same rules whoever decides (the store,
//! the deny cache, a hot-key batch, the failure policy).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ratelimit_core::clock::FakeClock;
use ratelimit_core::config::{DenyCache, FailurePolicy};
use ratelimit_core::http::{
    ApiKey, Entry, ExtensionId, Gate, HeaderValues, KeyExtractor, Passage, PeerIp, RequestView,
    UserServiceOrIp,
};
use ratelimit_core::identity::Facet;
use ratelimit_core::verdict::Source;
use ratelimit_core::{
    DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Quota, Rule, Rules, Target,
};
use ratelimit_test_support::stores::{AwaitedStore, FailingStore};

const MINUTE: Duration = Duration::from_secs(60);

/// A request as a test writes it.
#[derive(Default)]
struct Request {
    headers: Vec<(&'static str, String)>,
    peer: Option<IpAddr>,
    identity: Option<Identity<'static>>,
    method: &'static str,
}

impl Request {
    fn from(peer: &str) -> Self {
        Self {
            peer: Some(peer.parse().unwrap()),
            method: "GET",
            ..Self::default()
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

impl RequestView for Request {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_bytes())
    }

    fn header_values<'a>(&'a self, name: &str) -> Box<dyn Iterator<Item = &'a [u8]> + 'a> {
        let name = name.to_owned();
        Box::new(
            self.headers
                .iter()
                .filter(move |(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes()),
        )
    }

    fn peer_ip(&self) -> Option<IpAddr> {
        self.peer
    }

    fn identity(&self) -> Option<&Identity<'static>> {
        self.identity.as_ref()
    }

    fn method(&self) -> &str {
        self.method
    }

    fn path(&self) -> &str {
        "/"
    }
}

type Sink = Vec<(&'static str, Bytes)>;

fn fields(values: Option<HeaderValues<Bytes>>) -> Vec<(&'static str, String)> {
    let mut sink = Sink::new();
    Gate::add_fields(&mut sink, values);
    sink.into_iter()
        .map(|(name, value)| (name, String::from_utf8(value.to_vec()).unwrap()))
        .collect()
}

fn field<'a>(fields: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

/// The names of the rules a field lists, in order.
fn listed(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(", ")
        .filter_map(|item| item.split('"').nth(1).map(str::to_owned))
        .collect()
}

async fn pass(gate: &Gate, request: &Request) -> Passage<Bytes> {
    let entry: Entry<'_> = gate.entry(request).unwrap();
    match gate.try_pass::<Sink>(&entry) {
        Ok(passage) => passage,
        Err(pending) => gate.pass::<Sink>(pending).await,
    }
}

/// The refusal's status, source and fields; panics on an admission.
async fn refused(gate: &Gate, request: &Request) -> (u16, Source, Vec<(&'static str, String)>) {
    match pass(gate, request).await {
        Passage::Refuse(mut refusal) => {
            let status = refusal.status();
            let source = refusal.verdict().unwrap().source();
            (status, source, fields(refusal.take_fields()))
        }
        Passage::Admit(_) => panic!("admitted"),
    }
}

fn rules(default: u32) -> Vec<Rule> {
    vec![
        Rule::new("global", Target::Global, Quota::new(1_000, MINUTE).unwrap()).unwrap(),
        Rule::new(
            "default",
            Target::Each,
            Quota::new(default, MINUTE).unwrap(),
        )
        .unwrap(),
    ]
}

fn limiter(config: LimiterConfig) -> DistributedRateLimiter {
    DistributedRateLimiter::new(rules(1).into_iter().fold(config, LimiterConfig::rule))
}

#[tokio::test]
async fn a_refusal_lists_every_rule_whoever_answers_it() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let memory = || Arc::new(MemoryStore::with_clock(clock.clone()));
    let request = Request::from("203.0.113.9");
    let expected = ["global", "default"];

    // The store.
    let gate = Gate::new(limiter(LimiterConfig::new(memory())));
    assert!(matches!(pass(&gate, &request).await, Passage::Admit(_)));
    let (status, source, by_store) = refused(&gate, &request).await;
    assert_eq!((status, source), (429, Source::Store));

    // The deny cache, after the store's first denial.
    let cached = Gate::new(limiter(
        LimiterConfig::new(memory()).deny_cache(DenyCache::new(100).clock(clock.clone())),
    ));
    assert!(matches!(pass(&cached, &request).await, Passage::Admit(_)));
    refused(&cached, &request).await;
    let (status, source, by_cache) = refused(&cached, &request).await;
    assert_eq!((status, source), (429, Source::DenyCache));

    // A hot-key batch that holds no unit.
    let batched = Gate::new(DistributedRateLimiter::new(
        LimiterConfig::new(memory())
            .rule(rules(1)[0].clone().with_batch(4))
            .rule(rules(1)[1].clone().with_batch(2)),
    ));
    let mut by_batch = None;
    for _ in 0..4 {
        if let Passage::Refuse(mut refusal) = pass(&batched, &request).await {
            assert_eq!(refusal.status(), 429);
            by_batch = Some(fields(refusal.take_fields()));
            break;
        }
    }
    let by_batch = by_batch.expect("a batch denies");

    // The failure policy, the store down.
    let closed = Gate::new(limiter(
        LimiterConfig::new(Arc::new(FailingStore)).failure_policy(FailurePolicy::FailClosed),
    ));
    let (status, source, by_policy) = refused(&closed, &request).await;
    assert_eq!((status, source), (503, Source::FailClosed));

    for (who, fields) in [
        ("store", &by_store),
        ("deny cache", &by_cache),
        ("batch", &by_batch),
        ("failure policy", &by_policy),
    ] {
        assert_eq!(
            listed(field(fields, "ratelimit-policy")),
            expected,
            "{who}: {fields:?}"
        );
        assert_eq!(
            listed(field(fields, "ratelimit")),
            expected,
            "{who}: {fields:?}"
        );
        assert!(field(fields, "retry-after").is_some(), "{who}: {fields:?}");
    }
    // The cache says what the store said.
    assert_eq!(by_cache, by_store);
}

#[tokio::test]
async fn extractors_find_every_facet_they_can() {
    let request = Request::from("::ffff:203.0.113.9")
        .header("x-user-id", "alice")
        .header("x-api-key", "sk_live_abc");
    let who = UserServiceOrIp::default().extract(&request).unwrap();
    assert_eq!(
        who,
        Identity::user("alice").with_ip("203.0.113.9".parse().unwrap())
    );
    let client = ApiKey::default().extract(&request).unwrap();
    assert!(client.has(Facet::Key) && client.has(Facet::Ip));
    assert!(!client.to_string().contains("sk_live"));

    // No peer address: the server's mistake, said as such.
    let nowhere = Request::default();
    let error = PeerIp::new().extract(&nowhere).unwrap_err();
    assert_eq!(error.status(), 500);
    assert_eq!(
        ApiKey::default().extract(&nowhere).unwrap_err().status(),
        401
    );
    assert_eq!(ExtensionId.extract(&nowhere).unwrap_err().status(), 401);

    // An identity an earlier layer attached is read where it is.
    let signed_in = Request {
        identity: Some(Identity::user("bob").into_owned()),
        ..Request::default()
    };
    assert_eq!(
        ExtensionId.extract(&signed_in).unwrap(),
        Identity::user("bob")
    );

    // A function is an extractor; a cost function reads the same view.
    fn by_tenant(
        request: &dyn RequestView,
    ) -> Result<Identity<'_>, ratelimit_core::http::KeyError> {
        request
            .header("x-tenant")
            .map(Identity::key)
            .ok_or(ratelimit_core::http::KeyError::new(403, "tenant required"))
    }
    let limiter = limiter(LimiterConfig::new(Arc::new(MemoryStore::new())));
    let gate = Gate::new(limiter)
        .key_extractor(by_tenant)
        .rules(Rules::route(["default"]))
        .cost(|request| if request.method() == "POST" { 2 } else { 1 });
    let post = Request {
        method: "POST",
        ..Request::from("10.0.0.1").header("x-tenant", "acme")
    };
    let entry = gate.entry(&post).unwrap();
    assert_eq!(entry.cost(), 2);
    assert_eq!(entry.identity(), &Identity::key("acme"));
    assert_eq!(
        gate.entry(&Request::from("10.0.0.1")).unwrap_err().status(),
        403
    );
}

#[tokio::test]
async fn a_misconfigured_route_is_the_server_s_error_without_fields() {
    let limiter = limiter(LimiterConfig::new(Arc::new(MemoryStore::new())));
    limiter
        .add_rule("vip", "user:42".parse().unwrap(), 5, MINUTE)
        .await
        .unwrap();
    // A named rule for another user does not apply to this caller.
    let gate = Gate::new(limiter).rules(Rules::named(["vip"]));
    match pass(&gate, &Request::from("10.0.0.1")).await {
        Passage::Refuse(mut refusal) => {
            assert_eq!(refusal.status(), 500);
            assert!(refusal.verdict().is_none());
            assert!(refusal.body().contains("misconfigured"));
            assert!(refusal.take_fields().is_none());
        }
        Passage::Admit(_) => panic!("admitted"),
    }
}

#[tokio::test]
async fn an_awaited_check_answers_as_one_in_place() {
    // One limiter answers in place, the other's store must be awaited (the
    // check goes on from what its attempt in place prepared): a login route
    // counting the address and the caller, checked alike by both.
    let clock = FakeClock::at_micros(1_000_000_000);
    let make = |store: Arc<dyn ratelimit_core::Store>| {
        let limiter = DistributedRateLimiter::new(
            LimiterConfig::new(store)
                .rule(Rule::new("default", Target::Each, Quota::new(3, MINUTE).unwrap()).unwrap())
                .rule(
                    Rule::new(
                        "login",
                        Target::Every(Facet::Ip),
                        Quota::new(2, MINUTE).unwrap(),
                    )
                    .unwrap(),
                ),
        );
        Gate::new(limiter).rules(Rules::route(["login", "default"]))
    };
    let in_place = make(Arc::new(MemoryStore::with_clock(clock.clone())));
    let awaited = make(Arc::new(AwaitedStore(MemoryStore::with_clock(
        clock.clone(),
    ))));
    for (user, peer) in [
        ("a", "10.0.0.1"),
        ("b", "10.0.0.1"),
        ("c", "10.0.0.1"),
        ("a", "10.0.0.2"),
        ("a", "10.0.0.3"),
        ("a", "10.0.0.4"),
    ] {
        let request = Request::from(peer).header("x-user-id", user);
        let answers = [&in_place, &awaited].map(|gate| {
            let entry = gate.entry(&request).unwrap();
            gate.try_pass::<Sink>(&entry)
        });
        let [first, second] = answers;
        let first = first.expect("the in-memory store answers in place");
        let second = match second {
            Ok(_) => panic!("an awaited store answers in a future"),
            Err(pending) => awaited.pass::<Sink>(pending).await,
        };
        let outline = |passage: Passage<Bytes>| match passage {
            Passage::Admit(values) => (200, fields(values)),
            Passage::Refuse(mut refusal) => (refusal.status(), fields(refusal.take_fields())),
        };
        assert_eq!(outline(first), outline(second), "{user} from {peer}");
    }
}
