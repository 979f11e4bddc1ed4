//! Validation: from the raw form to a [`Scenario`], every mistake located and explained.

use super::raw::*;
use super::*;
use toml::Spanned;

pub(super) struct Validator<'a> {
    pub file: &'a str,
    pub source: &'a str,
    pub load: Loader<'a>,
}

/// What a service or consumer table may refer to: the declared topics, and the workflow.
#[derive(Clone, Copy)]
struct Declared<'a> {
    topics: &'a [TopicSpec],
    workflow: Option<&'a crate::workflow::Workflow>,
}

/// The names of the invariants a workflow declares.
fn declared_invariants(wf: Option<&crate::workflow::Workflow>) -> Vec<&str> {
    wf.iter().flat_map(|wf| wf.invariants.iter().map(|i| i.name())).collect()
}

/// Upper bounds of evsim's own time knobs (Kafka's keys have their own ranges).
const HOUR_US: u64 = 3_600_000_000;
const YEAR_MS: u64 = 31_536_000_000;

impl Validator<'_> {
    fn err<T>(&self, span: std::ops::Range<usize>, msg: impl Into<String>) -> Result<T, ScenarioError> {
        let span = if span.is_empty() && span.start == 0 { None } else { Some(span) };
        Err(ScenarioError::at(self.file, self.source, span, msg))
    }

    fn positive_u32(&self, v: &Spanned<u32>, what: &str, max: u32) -> Result<u32, ScenarioError> {
        let n = *v.get_ref();
        if n == 0 || n > max {
            return self.err(v.span(), format!("`{what}` is {n}; expected an integer from 1 to {max}"));
        }
        Ok(n)
    }

    /// A duration knob of evsim's own, bounded so that virtual-time arithmetic cannot overflow.
    fn bounded(&self, v: &Spanned<u64>, what: &str, max: u64) -> Result<u64, ScenarioError> {
        let n = *v.get_ref();
        if n > max {
            return self.err(v.span(), format!("`{what}` is {n}; expected at most {max}"));
        }
        Ok(n)
    }

    /// A probability in `0..=1`, 0 when absent.
    fn probability(&self, v: Option<&Spanned<f64>>, what: &str) -> Result<f64, ScenarioError> {
        let Some(v) = v else { return Ok(0.0) };
        let p = *v.get_ref();
        if !(0.0..=1.0).contains(&p) {
            return self.err(v.span(), format!("`{what}` is {p}; expected a probability from 0 to 1"));
        }
        Ok(p)
    }

    fn reader<'b>(&'b self, section: &'b str, props: Option<Props>) -> PropReader<'b> {
        PropReader::new(self.file, self.source, section, props.unwrap_or_default())
    }

    pub(super) fn scenario(&self, raw: Raw) -> Result<Scenario, ScenarioError> {
        if raw.name.get_ref().trim().is_empty() {
            return self.err(raw.name.span(), "`name` is empty; expected a scenario name such as \"order-basic\"");
        }
        // The workflow first: it declares invariants the run may claim, and decides which
        // tables need no `kind`.
        let (workflow_file, workflow) = match &raw.workflow {
            Some(w) => {
                let (file, wf) = self.workflow(w.get_ref())?;
                (Some(file), Some(wf))
            }
            None => (None, None),
        };
        let run = self.run(raw.run, &declared_invariants(workflow.as_ref()))?;
        let brokers = self.positive_u32(&raw.cluster.brokers, "cluster.brokers", MAX_BROKERS)?;
        let mut r = self.reader("cluster.config", raw.cluster.config);
        let broker = BrokerConfig::read(&mut r)?;
        let min_insync_span = r.span_of("min.insync.replicas");
        let session_bounds_span =
            r.span_of("group.min.session.timeout.ms").or(r.span_of("group.max.session.timeout.ms"));
        r.finish()?;

        let mut topics = Vec::new();
        for (name, props) in raw.topics {
            let span = props.span();
            if topics.len() as u64 >= MAX_TOPICS {
                return self.err(
                    span,
                    format!("this is topic number {}; expected at most {MAX_TOPICS} topics", topics.len() + 1),
                );
            }
            let section = format!("topics.{name}");
            let mut r = PropReader::new(self.file, self.source, &section, props.into_inner());
            if !r.has("partitions") {
                return self.err(span, format!("topic `{name}` has no `partitions`; expected e.g. `partitions = 3`"));
            }
            let partitions = r.int("partitions", 1, 1, 100_000)? as u32;
            let replication_factor = r.int("replication.factor", 1, 1, 1_000)? as u32;
            // Where the totals are reported: the value that made them too large.
            let (partitions_at, rf_at) = (r.span_of("partitions"), r.span_of("replication.factor"));
            r.finish()?;
            if replication_factor > brokers {
                return self.err(
                    span,
                    format!("topic `{name}` has replication.factor {replication_factor} but the cluster has {brokers} broker(s)"),
                );
            }
            topics.push(TopicSpec { name, partitions, replication_factor });
            let total: u64 = topics.iter().map(|t| u64::from(t.partitions)).sum();
            let replicas: u64 = topics.iter().map(|t| u64::from(t.partitions) * u64::from(t.replication_factor)).sum();
            if total > MAX_PARTITIONS {
                return self.err(
                    partitions_at.unwrap_or(span),
                    format!(
                        "the topics so far have {total} partitions; expected at most {MAX_PARTITIONS} in all (every \
                         producer keeps a queue per partition)"
                    ),
                );
            }
            if replicas > MAX_REPLICAS {
                return self.err(
                    rf_at.or(partitions_at).unwrap_or(span),
                    format!(
                        "the topics so far have {replicas} partition replicas (partitions x replication.factor); expected \
                         at most {MAX_REPLICAS} in all"
                    ),
                );
            }
        }

        let wf = workflow.as_ref();
        let workflow_span = raw.workflow.as_ref().map(|w| w.get_ref().file.span()).unwrap_or_default();
        if let Some(wf) = wf {
            self.workflow_tables(
                wf,
                &|s| raw.services.contains_key(s),
                &|c| raw.consumers.contains_key(c),
                &|t| topics.iter().any(|x| x.name == t),
                workflow_span.clone(),
            )?;
        }
        let (rate_span, coupon_span, queue_span, users_span, workload) = match raw.workload {
            Some(w) => {
                let w = w.into_inner();
                let spans = (
                    w.rate_per_sec.span(),
                    w.coupon_rate_per_sec.as_ref().map(|r| r.span()),
                    w.queue_rate_per_sec.as_ref().map(|r| r.span()),
                    w.users.span(),
                );
                (spans.0, spans.1, spans.2, spans.3, self.workload(w)?)
            }
            None if wf.is_some() => (0..0, None, None, 0..0, WorkloadSpec::none()),
            None => {
                return self.err(
                    0..0,
                    "the scenario has no requests; expected a [workload] table (requests to the compiled-in \
                     services) or a [workflow] table naming a workflow file whose requests the services run",
                );
            }
        };
        let database =
            DatabaseSpec { latency_us: self.bounded(&raw.database.latency_us, "database.latency_us", HOUR_US)? };

        let mut services = Vec::new();
        // Processes: the workload, the controller and the brokers, then every instance.
        let mut processes = 2 + u64::from(brokers);
        let partitions: u64 = topics.iter().map(|t| u64::from(t.partitions)).sum();
        let mut producers = 0u64;
        let mut too_many =
            |instances: u32, producer: bool, span: std::ops::Range<usize>| -> Result<(), ScenarioError> {
                processes += u64::from(instances);
                if producer {
                    producers += u64::from(instances);
                }
                if processes > MAX_PROCESSES {
                    return self.err(
                    span,
                    format!(
                        "the scenario has {processes} processes so far (brokers, service and consumer instances, the \
                         controller and the workload); expected at most {MAX_PROCESSES}"
                    ),
                );
                }
                if partitions * producers > MAX_PRODUCER_PARTITIONS {
                    return self.err(
                        span,
                        format!(
                            "{producers} producer instances x {partitions} partitions is {}; expected at most \
                         {MAX_PRODUCER_PARTITIONS} (every producer keeps state per partition)",
                            partitions * producers
                        ),
                    );
                }
                Ok(())
            };
        // Where an instance count is reported: its value, or its table when it is left out.
        let instances_at = |value: std::ops::Range<usize>, table: std::ops::Range<usize>| {
            if value.is_empty() { table } else { value }
        };
        for (name, raw) in raw.services {
            let instances = instances_at(raw.get_ref().instances.span(), raw.span());
            let service = self.service(name, raw, Declared { topics: &topics, workflow: wf })?;
            too_many(service.instances, true, instances)?;
            services.push(service);
        }
        // Every request stream counts towards one cap: (name, requests per second, where it is set).
        let pays = services.iter().any(|s| s.kind == ServiceKind::PaymentService);
        let streams = [
            ("rate_per_sec (orders)", workload.rate_per_sec, Some(rate_span.clone())),
            (
                "rate_per_sec (the payments that follow the orders)",
                if pays { workload.rate_per_sec } else { 0.0 },
                Some(rate_span.clone()),
            ),
            // A duplicated request (a double click) is a second request.
            (
                "coupon_rate_per_sec",
                workload.coupon_rate_per_sec * (1.0 + workload.duplicate_request_rate),
                coupon_span,
            ),
            ("queue_rate_per_sec", workload.queue_rate_per_sec, queue_span),
        ];
        // A workflow's request types are streams too (their rates are in the workflow file); a
        // follow-up is sent at most once per request it follows, so at that request's rate.
        let workflow_streams: Vec<(String, f64, Option<std::ops::Range<usize>>)> = wf
            .map(|wf| {
                let rate = |mut i: usize| {
                    // The compiler refuses chains that come back to themselves.
                    while let Some(f) = &wf.requests[i].follows {
                        i = f.parent as usize;
                    }
                    // A double click is one more request.
                    let r = &wf.requests[i];
                    r.rate_per_sec * (1.0 + r.duplicate.as_ref().map_or(0.0, |d| d.rate))
                };
                wf.requests
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        (format!("the workflow's `{}` requests", r.name), rate(i), Some(workflow_span.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let streams: Vec<(String, f64, Option<std::ops::Range<usize>>)> =
            streams.into_iter().map(|(n, r, s)| (n.to_string(), r, s)).chain(workflow_streams).collect();
        let requests: f64 = streams.iter().map(|(_, rate, _)| rate * run.duration_ms as f64 / 1_000.0).sum();
        if requests > MAX_REQUESTS_PER_RUN as f64 {
            let (name, _, span) = streams.iter().max_by(|a, b| a.1.total_cmp(&b.1)).expect("four streams at least");
            return self.err(
                span.clone().unwrap_or_default(),
                format!(
                    "the workload asks for {requests:.0} requests in one run ([workload] rates x [run] duration_ms; the \
                     largest stream is {name}); expected at most {MAX_REQUESTS_PER_RUN} (a run keeps its whole history \
                     in memory, about 600 bytes a request)"
                ),
            );
        }
        if pays && u64::from(workload.users) > MAX_ACCOUNTS {
            return self.err(
                users_span,
                format!(
                    "`users` is {} with a payment service, which keeps a balance per user from the start; expected at \
                     most {MAX_ACCOUNTS}",
                    workload.users
                ),
            );
        }
        if workload.rate_per_sec > 0.0 && !services.iter().any(|s| s.kind == ServiceKind::OrderService) {
            return self.err(
                rate_span,
                "the order workload needs a service to send its requests to; expected a table such as \
                 [services.order-service] with kind = \"order-service\"",
            );
        }
        let mut consumers: Vec<ConsumerSpec> = Vec::new();
        let mut group_partitions = 0u64;
        for (name, raw) in raw.consumers {
            let span = raw.span();
            let instances = instances_at(raw.get_ref().instances.span(), span.clone());
            let declared = Declared { topics: &topics, workflow: wf };
            let c = self.consumer(name, span.clone(), raw.into_inner(), declared, &broker, &session_bounds_span)?;
            // A dead-letter publisher is a producer too.
            too_many(c.instances, c.dlq_topic.is_some(), instances)?;
            if let Some(other) = consumers.iter().find(|o| o.consumer.group_id == c.consumer.group_id) {
                return self.err(
                    span,
                    format!(
                        "[consumers.{}] and [consumers.{}] both use group.id \"{}\"; expected one table per consumer group",
                        other.name, c.name, c.consumer.group_id
                    ),
                );
            }
            if let Some(dlq) = &c.dlq_topic
                && (c.topics.contains(dlq) || services.iter().any(|s| &s.topic == dlq))
            {
                return self.err(
                    span,
                    format!(
                        "[consumers.{}] parks failed records on `{dlq}`, which it reads or a service publishes to; \
                         expected a topic of its own for dead letters, e.g. dlq_topic = \"{}.DLT\"",
                        c.name,
                        c.topics.first().map_or("records", String::as_str)
                    ),
                );
            }
            // Every group fetches and tracks every partition of its topics.
            group_partitions += c
                .topics
                .iter()
                .filter_map(|t| topics.iter().find(|x| &x.name == t))
                .map(|t| u64::from(t.partitions))
                .sum::<u64>();
            if group_partitions > MAX_GROUP_PARTITIONS {
                return self.err(
                    span,
                    format!(
                        "the consumer groups so far read {group_partitions} partitions in all (each group counts every \
                         partition of its topics); expected at most {MAX_GROUP_PARTITIONS}"
                    ),
                );
            }
            consumers.push(c);
        }
        for t in &topics {
            if broker.min_insync_replicas > t.replication_factor {
                // Kafka accepts the topic, but no acks=all produce can ever succeed on it.
                return self.err(
                    min_insync_span.clone().unwrap_or_default(),
                    format!(
                        "min.insync.replicas is {} but topic `{}` has replication.factor {}: every acks=all send \
                         would fail with NOT_ENOUGH_REPLICAS; expected min.insync.replicas <= replication.factor",
                        broker.min_insync_replicas, t.name, t.replication_factor
                    ),
                );
            }
        }
        let mut scenario = Scenario {
            name: raw.name.into_inner(),
            description: raw.description,
            run,
            brokers,
            broker,
            network: self.network(raw.network)?,
            topics,
            workload,
            database,
            services,
            consumers,
            faults: Vec::new(),
            swarm: None,
            check: CheckSpec::default(),
            workflow: None,
            workflow_file,
        };
        scenario.workflow = workflow.map(std::sync::Arc::new);
        let nodes = scenario.node_names();
        for f in raw.faults {
            if scenario.faults.len() as u64 >= MAX_FAULTS {
                return self
                    .err(f.span(), format!("this is fault number {}; expected at most {MAX_FAULTS}", MAX_FAULTS + 1));
            }
            let fault = self.fault(f, &scenario, &nodes)?;
            scenario.faults.push(fault);
        }
        if let Some(sw) = raw.swarm {
            scenario.swarm = Some(self.swarm(sw.into_inner(), &scenario, &nodes)?);
        }
        if let Some(check) = raw.check {
            for e in check.expected {
                let e = self.expected(e, &scenario)?;
                scenario.check.expected.push(e);
            }
        }
        Ok(scenario)
    }

    fn expected(&self, e: Spanned<RawExpected>, scenario: &Scenario) -> Result<Expected, ScenarioError> {
        let span = e.span();
        let e = e.into_inner();
        let declared = declared_invariants(scenario.workflow.as_deref());
        let invariants = self.invariants(e.invariants.get_ref(), &declared)?;
        for name in e.invariants.get_ref() {
            // Every name is known here (evsim's own or declared).
            if !scenario.run.invariants.contains(&Invariant::declared(name.get_ref())) {
                return self.err(
                    name.span(),
                    format!(
                        "`{}` is not claimed in `run.invariants`; expected one of the claimed invariants (only those are searched)",
                        name.get_ref()
                    ),
                );
            }
        }
        if invariants.is_empty() {
            return self.err(
                e.invariants.span(),
                "`invariants` is empty; expected the claimed invariants this counterexample violates",
            );
        }
        let faults = match &e.faults {
            Some(f) => self.fault_kinds(f.get_ref())?,
            None => Vec::new(),
        };
        let condition = match &e.condition {
            None => None,
            Some(c) => match Condition::from_name(c.get_ref()) {
                Some(c) => Some(c),
                None => {
                    let known: Vec<&str> = Condition::ALL.iter().map(|c| c.name()).collect();
                    return self.err(
                        c.span(),
                        format!("unknown condition \"{}\"; expected one of: {}", c.get_ref(), known.join(", ")),
                    );
                }
            },
        };
        if faults.is_empty() && condition.is_none() {
            return self.err(
                span,
                "this expected counterexample names neither `faults` nor `condition`; expected e.g. `faults = [\"service-crash\"]`, so that it cannot hide every violation",
            );
        }
        let why = e.why.get_ref().trim().to_string();
        if why.is_empty() {
            return self.err(
                e.why.span(),
                "`why` is empty; expected the Kafka behaviour behind this counterexample, in words",
            );
        }
        Ok(Expected { invariants, faults, condition, why })
    }

    fn fault(&self, f: Spanned<RawFault>, scenario: &Scenario, nodes: &[String]) -> Result<FaultSpec, ScenarioError> {
        let span = f.span();
        let f = f.into_inner();
        let Some(kind) = FaultKind::from_name(f.kind.get_ref()) else {
            let known: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
            return self.err(
                f.kind.span(),
                format!("unknown fault kind \"{}\"; expected one of: {}", f.kind.get_ref(), known.join(", ")),
            );
        };
        let end_ms = scenario.end_ms();
        let at_ms = *f.at_ms.get_ref();
        if at_ms >= end_ms {
            return self.err(
                f.at_ms.span(),
                format!("`at_ms` is {at_ms} but the run ends at {end_ms} ms; expected a start inside the run (it would never fire)"),
            );
        }
        let for_ms = match &f.for_ms {
            Some(d) if *d.get_ref() == 0 => {
                return self.err(
                    d.span(),
                    "`for_ms` is 0; expected a positive length in milliseconds (leave it out for \"until the end\")",
                );
            }
            Some(d) => Some(self.bounded(d, "for_ms", YEAR_MS)?),
            None => None,
        };
        let target = match (&f.target, kind) {
            (Some(t), FaultKind::DbUnavailable) => {
                return self.err(
                    t.span(),
                    format!("a db-unavailable fault takes no `target`; expected {}", kind.target_form()),
                );
            }
            (None, FaultKind::DbUnavailable) => None,
            (None, _) => {
                return self
                    .err(span, format!("this {} fault has no `target`; expected {}", kind.name(), kind.target_form()));
            }
            (Some(t), _) => {
                let name = t.get_ref();
                let ok = match kind {
                    FaultKind::BrokerCrash | FaultKind::BrokerPause => {
                        name.starts_with("broker-") && nodes.contains(name)
                    }
                    FaultKind::ServiceCrash => {
                        scenario.services.iter().any(|s| (0..s.instances).any(|i| *name == format!("{}-{i}", s.name)))
                    }
                    FaultKind::ConsumerCrash | FaultKind::ConsumerPause => {
                        scenario.consumers.iter().any(|c| (0..c.instances).any(|i| *name == format!("{}-{i}", c.name)))
                    }
                    FaultKind::PlatformOutage => scenario.consumers.iter().any(|c| c.name == *name),
                    _ if name == super::CONTROLLER => {
                        return self.err(
                            t.span(),
                            format!(
                                "the controller cannot be a fault's target: it stays up and reachable, as a separate controller quorum would; to cut a broker off from it, write e.g. `target = \"broker-0\"` with `peer = \"{}\"`",
                                super::CONTROLLER
                            ),
                        );
                    }
                    _ => nodes[1..].contains(name),
                };
                if !ok {
                    return self.err(
                        t.span(),
                        format!(
                            "{} target \"{name}\" is not in this scenario; expected {}",
                            kind.name(),
                            kind.target_form()
                        ),
                    );
                }
                Some(name.clone())
            }
        };
        let network = kind.is_network();
        let only_network = |v: Option<std::ops::Range<usize>>, key: &str| -> Result<(), ScenarioError> {
            match v {
                Some(s) if !network => {
                    self.err(s, format!("`{key}` applies to network faults only; a {} fault takes none", kind.name()))
                }
                _ => Ok(()),
            }
        };
        only_network(f.peer.as_ref().map(|p| p.span()), "peer")?;
        only_network(f.direction.as_ref().map(|p| p.span()), "direction")?;
        let peer = match &f.peer {
            None => None,
            Some(p) if nodes[1..].contains(p.get_ref()) && Some(p.get_ref()) != target.as_ref() => {
                Some(p.get_ref().clone())
            }
            Some(p) => {
                return self.err(
                    p.span(),
                    format!("`peer` \"{}\" is not another node of this scenario; expected a broker, service instance, consumer instance or \"controller\"", p.get_ref()),
                );
            }
        };
        let direction = match &f.direction {
            None => Direction::Both,
            Some(d) => match d.get_ref().as_str() {
                "both" => Direction::Both,
                "outbound" => Direction::Outbound,
                "inbound" => Direction::Inbound,
                other => {
                    return self.err(
                        d.span(),
                        format!("`direction` is \"{other}\"; expected \"both\", \"outbound\" or \"inbound\""),
                    );
                }
            },
        };
        let rate = match (&f.rate, kind) {
            (Some(r), FaultKind::NetworkLoss) => {
                let p = *r.get_ref();
                if !(p > 0.0 && p <= 1.0) {
                    return self
                        .err(r.span(), format!("`rate` is {p}; expected a loss probability above 0 and at most 1"));
                }
                p
            }
            (None, FaultKind::NetworkLoss) => {
                return self.err(
                    span,
                    "this network-loss fault has no `rate`; expected e.g. `rate = 0.1` (10% of messages dropped)",
                );
            }
            (Some(r), _) => {
                return self.err(r.span(), format!("`rate` applies to network-loss faults only, not {}", kind.name()));
            }
            (None, _) => 0.0,
        };
        let delay_ms = match (&f.delay_ms, kind) {
            (Some(d), FaultKind::NetworkDelay) if *d.get_ref() > 0 => self.bounded(d, "delay_ms", YEAR_MS)?,
            (Some(d), FaultKind::NetworkDelay) => {
                return self.err(d.span(), "`delay_ms` is 0; expected a positive extra latency");
            }
            (None, FaultKind::NetworkDelay) => {
                return self.err(span, "this network-delay fault has no `delay_ms`; expected e.g. `delay_ms = 200`");
            }
            (Some(d), _) => {
                return self
                    .err(d.span(), format!("`delay_ms` applies to network-delay faults only, not {}", kind.name()));
            }
            (None, _) => 0,
        };
        Ok(FaultSpec { kind, at_ms, for_ms, target, peer, direction, rate, delay_ms })
    }

    /// Fault kinds by name, each once, in the order given.
    fn fault_kinds(&self, names: &[Spanned<String>]) -> Result<Vec<FaultKind>, ScenarioError> {
        let mut kinds = Vec::new();
        for k in names {
            match FaultKind::from_name(k.get_ref()) {
                Some(kind) if !kinds.contains(&kind) => kinds.push(kind),
                Some(_) => {}
                None => {
                    let known: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                    return self.err(
                        k.span(),
                        format!("unknown fault kind \"{}\"; expected one of: {}", k.get_ref(), known.join(", ")),
                    );
                }
            }
        }
        Ok(kinds)
    }

    /// Invariants by name, each once, in the order given: evsim's own, or one the workflow
    /// declares (`declared`).
    fn invariants(&self, names: &[Spanned<String>], declared: &[&str]) -> Result<Vec<Invariant>, ScenarioError> {
        let mut invariants = Vec::new();
        for name in names {
            let found = Invariant::from_name(name.get_ref())
                .or_else(|| declared.contains(&name.get_ref().as_str()).then(|| Invariant::declared(name.get_ref())));
            match found {
                Some(i) if !invariants.contains(&i) => invariants.push(i),
                Some(_) => {}
                None => {
                    let mut known: Vec<&str> = Invariant::ALL.iter().map(|i| i.name()).collect();
                    known.extend(declared.iter().filter(|d| Invariant::from_name(d).is_none()));
                    return self.err(
                        name.span(),
                        format!("unknown invariant \"{}\"; expected one of: {}", name.get_ref(), known.join(", ")),
                    );
                }
            }
        }
        Ok(invariants)
    }

    fn swarm(&self, sw: RawSwarm, scenario: &Scenario, nodes: &[String]) -> Result<SwarmSpec, ScenarioError> {
        let kinds = self.fault_kinds(sw.kinds.get_ref())?;
        if kinds.is_empty() {
            return self.err(
                sw.kinds.span(),
                "`kinds` is empty; expected the fault kinds to draw from, e.g. [\"broker-crash\", \"network-loss\"]",
            );
        }
        let max_faults = match &sw.max_faults {
            None => 3,
            Some(m) => self.positive_u32(m, "swarm.max_faults", 100)?,
        };
        let max_for_ms = match &sw.max_for_ms {
            None => 5_000,
            Some(m) if *m.get_ref() > 0 => self.bounded(m, "swarm.max_for_ms", YEAR_MS)?,
            Some(m) => return self.err(m.span(), "`max_for_ms` is 0; expected a positive number of milliseconds"),
        };
        let max_loss_rate = match &sw.max_loss_rate {
            None => 0.2,
            Some(r) if *r.get_ref() > 0.0 && *r.get_ref() <= 1.0 => *r.get_ref(),
            Some(r) => {
                return self.err(
                    r.span(),
                    format!("`max_loss_rate` is {}; expected a probability above 0 and at most 1", r.get_ref()),
                );
            }
        };
        let mut targets: Vec<String> = Vec::new();
        if let Some(t) = &sw.targets {
            for name in t.get_ref() {
                let known = (nodes[1..].contains(name.get_ref()) && name.get_ref() != super::CONTROLLER)
                    || scenario.consumers.iter().any(|c| c.name == *name.get_ref());
                if !known {
                    return self.err(
                        name.span(),
                        format!(
                            "swarm target \"{}\" is not in this scenario; expected a broker, service or consumer \
                             instance (such as \"broker-0\") or a consumer table",
                            name.get_ref()
                        ),
                    );
                }
                if !targets.contains(name.get_ref()) {
                    targets.push(name.get_ref().clone());
                }
            }
            if targets.is_empty() {
                return self.err(t.span(), "`targets` is empty; expected the nodes faults may hit, e.g. [\"broker-0\"], or no `targets` for all");
            }
        }
        Ok(SwarmSpec { kinds, max_faults, max_for_ms, max_loss_rate, targets })
    }

    fn network(&self, n: RawNetwork) -> Result<NetworkSpec, ScenarioError> {
        let latency_us = *n.latency_us.get_ref();
        // A real network always takes time; zero would let a request loop (a fetch answered at
        // once, sent again at once) spin forever at one instant of virtual time.
        if latency_us == 0 {
            return self.err(n.latency_us.span(), "`latency_us` is 0; expected at least 1 microsecond");
        }
        let latency_us = self.bounded(&n.latency_us, "network.latency_us", HOUR_US)?;
        let jitter_us = self.bounded(&n.jitter_us, "network.jitter_us", HOUR_US)?;
        Ok(NetworkSpec { latency_us, jitter_us })
    }

    fn run(&self, raw: RawRun, declared: &[&str]) -> Result<RunSpec, ScenarioError> {
        let duration_ms = *raw.duration_ms.get_ref();
        if duration_ms == 0 {
            return self.err(raw.duration_ms.span(), "`duration_ms` is 0; expected a positive number of milliseconds");
        }
        let invariants = self.invariants(&raw.invariants, declared)?;
        let duration_ms = self.bounded(&raw.duration_ms, "duration_ms", YEAR_MS)?;
        let quiet_period_ms = self.bounded(&raw.quiet_period_ms, "quiet_period_ms", YEAR_MS)?;
        Ok(RunSpec { duration_ms, quiet_period_ms, seed: raw.seed, invariants })
    }

    fn workload(&self, w: RawWorkload) -> Result<WorkloadSpec, ScenarioError> {
        let rate = *w.rate_per_sec.get_ref();
        if !(0.0..=MAX_RATE_PER_SEC).contains(&rate) {
            return self.err(
                w.rate_per_sec.span(),
                format!("`rate_per_sec` is {rate}; expected a number from 0 (no orders) to {MAX_RATE_PER_SEC}"),
            );
        }
        let products = self.positive_u32(&w.products, "workload.products", 10_000_000)?;
        let users = self.positive_u32(&w.users, "workload.users", u32::MAX)?;
        let quantity_max = self.positive_u32(&w.quantity_max, "workload.quantity_max", 1_000_000)?;
        let stock = *w.stock_per_product.get_ref();
        if stock < 0 {
            return self.err(w.stock_per_product.span(), format!("`stock_per_product` is {stock}; expected 0 or more"));
        }
        let product_distribution = match w.product_distribution {
            None => ProductDistribution::Uniform,
            Some(d) => match d.get_ref().as_str() {
                "uniform" => ProductDistribution::Uniform,
                "zipf" => {
                    let s = w.zipf_exponent.as_ref().map_or(1.0, |s| *s.get_ref());
                    if !(s > 0.0 && s <= 10.0) {
                        let span = w.zipf_exponent.map_or(d.span(), |s| s.span());
                        return self
                            .err(span, format!("`zipf_exponent` is {s}; expected a number above 0 and at most 10"));
                    }
                    ProductDistribution::Zipf(s)
                }
                other => {
                    return self.err(
                        d.span(),
                        format!("`product_distribution` is \"{other}\"; expected \"uniform\" or \"zipf\""),
                    );
                }
            },
        };
        let non_negative = |v: &Option<Spanned<i64>>, what: &str, default: i64| -> Result<i64, ScenarioError> {
            match v {
                None => Ok(default),
                Some(x) if *x.get_ref() >= 0 => Ok(*x.get_ref()),
                Some(x) => self.err(x.span(), format!("`{what}` is {}; expected 0 or more", x.get_ref())),
            }
        };
        let pay_after_ms = match &w.pay_after_ms {
            None => 100,
            Some(v) => self.bounded(v, "pay_after_ms", YEAR_MS)?,
        };
        Ok(WorkloadSpec {
            rate_per_sec: rate,
            products,
            stock_per_product: stock,
            users,
            quantity_max,
            product_distribution,
            pay_after_ms,
            price: non_negative(&w.price, "price", 10_000)?,
            balance: non_negative(&w.balance, "balance", 1_000_000_000)?,
            insufficient_balance_rate: self
                .probability(w.insufficient_balance_rate.as_ref(), "insufficient_balance_rate")?,
            coupon_rate_per_sec: match &w.coupon_rate_per_sec {
                None => 0.0,
                Some(r) if (0.0..=MAX_RATE_PER_SEC).contains(r.get_ref()) => *r.get_ref(),
                Some(r) => {
                    return self.err(
                        r.span(),
                        format!("`coupon_rate_per_sec` is {}; expected 0 to {MAX_RATE_PER_SEC}", r.get_ref()),
                    );
                }
            },
            coupons: match &w.coupons {
                None => 1,
                Some(c) => self.positive_u32(c, "workload.coupons", 1_000_000)?,
            },
            coupon_quantity: w.coupon_quantity.as_ref().map_or(100, |q| *q.get_ref()),
            duplicate_request_rate: self.probability(w.duplicate_request_rate.as_ref(), "duplicate_request_rate")?,
            queue_rate_per_sec: match &w.queue_rate_per_sec {
                None => 0.0,
                Some(r) if (0.0..=MAX_RATE_PER_SEC).contains(r.get_ref()) => *r.get_ref(),
                Some(r) => {
                    return self.err(
                        r.span(),
                        format!("`queue_rate_per_sec` is {}; expected 0 to {MAX_RATE_PER_SEC}", r.get_ref()),
                    );
                }
            },
            concerts: match &w.concerts {
                None => 1,
                Some(c) => self.positive_u32(c, "workload.concerts", 1_000_000)?,
            },
        })
    }

    fn topic_ref(&self, topics: &[TopicSpec], given: &Spanned<String>, what: &str) -> Result<String, ScenarioError> {
        let name = given.get_ref();
        if topics.iter().any(|t| t.name == *name) {
            return Ok(name.clone());
        }
        let known: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        self.err(
            given.span(),
            format!(
                "`{what}` names topic \"{name}\", which is not declared; expected one of the [topics.*] tables: {}",
                known.join(", ")
            ),
        )
    }

    /// `[workflow]`: the file read by the loader and compiled with the scenario's `params`.
    fn workflow(&self, w: &RawWorkflowRef) -> Result<(String, crate::workflow::Workflow), ScenarioError> {
        use crate::workflow::{Param, compile::compile_bound};
        let written = w.file.get_ref();
        if written.trim().is_empty() {
            return self.err(
                w.file.span(),
                "`file` is empty; expected the workflow file's path, relative to this scenario's directory, \
                 e.g. file = \"workflows/order.toml\"",
            );
        }
        let (name, text) = (self.load)(written).map_err(|e| {
            ScenarioError::at(
                self.file,
                self.source,
                Some(w.file.span()),
                format!(
                    "cannot read the workflow file \"{written}\" ({e}); expected a workflow file's path, relative to \
                     this scenario's directory"
                ),
            )
        })?;
        let mut bindings = Vec::new();
        let mut spans = Vec::new();
        for (key, v) in &w.params {
            let p = match v.get_ref() {
                toml::Value::Integer(i) => Param::Int(*i),
                toml::Value::Float(f) => Param::Float(*f),
                toml::Value::Boolean(b) => Param::Bool(*b),
                toml::Value::String(t) => Param::Str(t.clone()),
                other => {
                    return self.err(
                        v.span(),
                        format!(
                            "params.{key} is {} {}; expected an integer, a number, true or false, or a string",
                            if other.is_array() { "an" } else { "a" },
                            other.type_str()
                        ),
                    );
                }
            };
            bindings.push((key.clone(), p));
            spans.push(v.span());
        }
        let at_binding = |i: usize, msg: String| {
            ScenarioError::at(self.file, self.source, Some(spans[i].clone()), format!("expected {msg}"))
        };
        let wf = compile_bound(&name, &text, &bindings, &at_binding)?;
        Ok((name, wf))
    }

    /// A `[services.<name>]` table that runs a workflow's requests: its topic is their events'
    /// topic, and its publishing strategy one a workflow service has.
    fn workflow_service(
        &self,
        wf: &crate::workflow::Workflow,
        name: &str,
        topic: &str,
        raw: &RawService,
    ) -> Result<(), ScenarioError> {
        use crate::workflow::Step;
        let section = format!("services.{name}");
        let strategy = raw
            .publish
            .as_ref()
            .and_then(|p| PublishStrategy::ALL.into_iter().find(|s| s.name() == p.get_ref()))
            .unwrap_or(PublishStrategy::AfterCommit);
        let publish_span = raw.publish.as_ref().map(|p| p.span()).unwrap_or(raw.topic.span());
        for r in wf.requests.iter().filter(|r| r.service == name) {
            let is_publish = |s: &Step| matches!(s, Step::Publish { .. });
            let in_txn = r.handler.transaction.iter().filter(|s| is_publish(s)).count();
            let after = r.handler.after.iter().filter(|s| is_publish(s)).count();
            // The outbox row and the in-transaction send belong to the transaction.
            let needs_txn = matches!(strategy, PublishStrategy::InTransaction | PublishStrategy::Outbox);
            if needs_txn && after > 0 {
                return self.err(
                    publish_span,
                    format!(
                        "[{section}] publishes with `{}`, but the workflow's `{}` requests publish after their \
                         transaction; expected their publish steps inside `transaction` (or publish = \"after-commit\")",
                        strategy.name(),
                        r.name
                    ),
                );
            }
            // A blocking send is a plain send after the commit, whose report the steps wait for.
            if r.handler.waits() && strategy == PublishStrategy::AfterCommitAsync {
                return self.err(
                    publish_span,
                    format!(
                        "[{section}] publishes with `after-commit-async`, but the workflow's `{}` requests wait for a \
                         send (`wait = true`); expected publish = \"after-commit\" (a blocking send is made on the \
                         request's own thread)",
                        r.name
                    ),
                );
            }
            if strategy == PublishStrategy::InTransaction {
                let first = r.handler.transaction.iter().position(is_publish);
                let work_before = first
                    .is_some_and(|p| r.handler.transaction[..p].iter().any(|s| !matches!(s, Step::Require { .. })));
                if in_txn > 1 || work_before {
                    return self.err(
                        publish_span,
                        format!(
                            "[{section}] publishes in the transaction; expected the workflow's `{}` requests to \
                             publish one event, as the first step of their transaction after guards on the request \
                             (a transaction that reads or writes rows before the send holds their locks over it, and \
                             lock waits are not modelled yet; a cache command or call cannot be taken back)",
                            r.name
                        ),
                    );
                }
            }
        }
        for r in wf.requests.iter().filter(|r| r.service == name) {
            for step in r.handler.transaction.iter().chain(&r.handler.after) {
                if let crate::workflow::Step::Publish { event, .. } = step {
                    let e = &wf.events[*event as usize];
                    if e.topic != topic {
                        return self.err(
                            raw.topic.span(),
                            format!(
                                "[{section}] publishes the workflow's `{}` requests' event `{}`, whose topic is \
                                 `{}`; expected topic = \"{}\" (a service's producer sends to one topic)",
                                r.name, e.name, e.topic, e.topic
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Every request's service and every listener of the workflow has its table; every event
    /// goes to a declared topic.
    fn workflow_tables(
        &self,
        wf: &crate::workflow::Workflow,
        service: &dyn Fn(&str) -> bool,
        consumer: &dyn Fn(&str) -> bool,
        topic: &dyn Fn(&str) -> bool,
        at: std::ops::Range<usize>,
    ) -> Result<(), ScenarioError> {
        for r in &wf.requests {
            if !service(&r.service) {
                return self.err(
                    at,
                    format!(
                        "the workflow's `{}` requests go to service `{}`; expected a [services.{}] table to run them",
                        r.name, r.service, r.service
                    ),
                );
            }
        }
        for l in &wf.listeners {
            if !consumer(&l.name) {
                return self.err(
                    at,
                    format!(
                        "the workflow's listener `{}` has no consumer group; expected a [consumers.{}] table to run it",
                        l.name, l.name
                    ),
                );
            }
        }
        for e in &wf.events {
            if !topic(&e.topic) {
                return self.err(
                    at,
                    format!(
                        "the workflow's event `{}` goes to topic `{}`; expected a [topics.{}] table",
                        e.name, e.topic, e.topic
                    ),
                );
            }
        }
        Ok(())
    }

    fn service(
        &self,
        name: String,
        raw: Spanned<RawService>,
        declared: Declared<'_>,
    ) -> Result<ServiceSpec, ScenarioError> {
        let Declared { topics, workflow: wf } = declared;
        let table = raw.span();
        let raw = raw.into_inner();
        let section = format!("services.{name}");
        let request = wf.and_then(|wf| wf.requests.iter().find(|r| r.service == name));
        let kind = match (&raw.kind, request) {
            (None, Some(_)) => ServiceKind::Workflow,
            (Some(k), Some(r)) => {
                return self.err(
                    k.span(),
                    format!(
                        "[{section}] runs the workflow's `{}` requests (their `service` names it), so `kind` would \
                         be ignored; expected no `kind` in this table",
                        r.name
                    ),
                );
            }
            (None, None) => {
                return self.err(
                    table,
                    format!(
                        "[{section}] has no `kind`; expected kind = one of \"order-service\", \"payment-service\", \
                         \"coupon-api\", \"waiting-queue-api\", or a request of the [workflow] file with \
                         service = \"{name}\""
                    ),
                );
            }
            (Some(k), None) => match k.get_ref().as_str() {
                "order-service" => ServiceKind::OrderService,
                "payment-service" => ServiceKind::PaymentService,
                "coupon-api" => ServiceKind::CouponApi,
                "waiting-queue-api" => ServiceKind::WaitingQueueApi,
                other => {
                    return self.err(
                        k.span(),
                        format!(
                            "[{section}] kind is \"{other}\"; expected one of: \"order-service\", \"payment-service\", \"coupon-api\", \"waiting-queue-api\""
                        ),
                    );
                }
            },
        };
        let dedup = match &raw.dedup {
            None => CouponDedup::CacheSet,
            Some(d) if kind != ServiceKind::CouponApi => {
                return self.err(d.span(), format!("[{section}] dedup applies to kind = \"coupon-api\" only"));
            }
            Some(d) => match d.get_ref().as_str() {
                "cache-set" => CouponDedup::CacheSet,
                "db-unique" => CouponDedup::DbUnique,
                "none" => CouponDedup::None,
                other => {
                    return self.err(
                        d.span(),
                        format!("[{section}] dedup is \"{other}\"; expected \"cache-set\", \"db-unique\" or \"none\""),
                    );
                }
            },
        };
        let compensation = match &raw.compensation {
            None => Compensation::SeparateTransaction,
            Some(c) if kind != ServiceKind::PaymentService => {
                return self
                    .err(c.span(), format!("[{section}] compensation applies to kind = \"payment-service\" only"));
            }
            Some(c) => match c.get_ref().as_str() {
                "separate-transaction" => Compensation::SeparateTransaction,
                "same-transaction" => Compensation::SameTransaction,
                other => {
                    return self.err(
                        c.span(),
                        format!("[{section}] compensation is \"{other}\"; expected \"separate-transaction\" or \"same-transaction\""),
                    );
                }
            },
        };
        let instances = self.positive_u32(&raw.instances, &format!("{section}.instances"), 1_000)?;
        let topic = self.topic_ref(topics, &raw.topic, &format!("{section}.topic"))?;
        let publish = match &raw.publish {
            None => PublishStrategy::AfterCommit,
            Some(p) => match PublishStrategy::ALL.into_iter().find(|s| s.name() == p.get_ref()) {
                Some(s) => s,
                None => {
                    let names: Vec<String> = PublishStrategy::ALL.iter().map(|s| format!("\"{}\"", s.name())).collect();
                    return self.err(
                        p.span(),
                        format!("[{section}] publish is \"{}\"; expected one of {}", p.get_ref(), names.join(", ")),
                    );
                }
            },
        };
        if let (Some(wf), Some(_)) = (wf, request) {
            self.workflow_service(wf, &name, &topic, &raw)?;
        }
        let async_delay_us = self.bounded(&raw.async_delay_us, &format!("{section}.async_delay_us"), HOUR_US)?;
        let producer = self.producer(&section, raw.producer)?;
        let ms = |v: &Option<Spanned<u64>>, what: &str, default: u64| match v {
            None => Ok(default),
            Some(v) => self.bounded(v, &format!("{section}.{what}"), YEAR_MS).and_then(|n| {
                if n == 0 {
                    self.err(v.span(), format!("`{what}` is 0; expected at least 1 millisecond"))
                } else {
                    Ok(n)
                }
            }),
        };
        let outbox_scan_ms = ms(&raw.outbox_scan_ms, "outbox_scan_ms", 1_000)?;
        let outbox_retry_after_ms = ms(&raw.outbox_retry_after_ms, "outbox_retry_after_ms", 300_000)?;
        Ok(ServiceSpec {
            name,
            kind,
            instances,
            topic,
            publish,
            async_delay_us,
            outbox_scan_ms,
            outbox_retry_after_ms,
            compensation,
            dedup,
            producer,
        })
    }

    /// The `[<section>.producer]` table: a Java producer's settings, by Kafka's names.
    fn producer(&self, section: &str, raw: Option<Props>) -> Result<ProducerConfig, ScenarioError> {
        let producer_section = format!("{section}.producer");
        let mut r = self.reader(&producer_section, raw);
        let idempotence_given = r.has("enable.idempotence");
        let mut producer = ProducerConfig::read(&mut r)?;
        let idempotence_span = r.span_of("enable.idempotence").unwrap_or_default();
        r.finish()?;
        if let Some(conflict) = producer.idempotence_conflict() {
            if idempotence_given {
                return self.err(idempotence_span, format!("[{producer_section}]: {conflict}"));
            }
            // The Java client (3.2+, KAFKA-13598) turns the default idempotence off quietly when
            // the other settings conflict with it, and refuses only an explicit `true`.
            producer.enable_idempotence = false;
        }
        Ok(producer)
    }

    fn consumer(
        &self,
        name: String,
        table: std::ops::Range<usize>,
        oc: RawConsumer,
        declared: Declared<'_>,
        broker: &BrokerConfig,
        session_bounds: &Option<std::ops::Range<usize>>,
    ) -> Result<ConsumerSpec, ScenarioError> {
        let Declared { topics, workflow: wf } = declared;
        let section = format!("consumers.{name}");
        const KINDS: &str = "\"order-event-consumer\", \"payment-event-consumer\", \"coupon-issuer\", \"outbox-marker\", \
                             \"point-consumer\", \"coupon-use-consumer\", \"email-consumer\", \"token-activator\"";
        let listener = wf.and_then(|wf| wf.listeners.iter().find(|l| l.name == name).map(|l| (wf, l)));
        let kind = match (&oc.kind, listener) {
            (None, Some(_)) => ListenerKind::Workflow,
            (Some(k), Some(_)) => {
                return self.err(
                    k.span(),
                    format!(
                        "[{section}] runs the workflow's listener `{name}`, so `kind` would be ignored; expected no \
                         `kind` in this table"
                    ),
                );
            }
            (None, None) => {
                return self.err(
                    table,
                    format!(
                        "[{section}] has no `kind`; expected kind = one of {KINDS}, or a listener \
                         [listeners.{name}] in the [workflow] file"
                    ),
                );
            }
            (Some(k), None) => match k.get_ref().as_str() {
                "order-event-consumer" => ListenerKind::OrderEventConsumer,
                "payment-event-consumer" => ListenerKind::PaymentEventConsumer,
                "coupon-issuer" => ListenerKind::CouponIssuer,
                "outbox-marker" => ListenerKind::OutboxMarker,
                "point-consumer" => ListenerKind::PointConsumer,
                "coupon-use-consumer" => ListenerKind::CouponUseConsumer,
                "email-consumer" => ListenerKind::EmailConsumer,
                "token-activator" => ListenerKind::TokenActivator,
                other => {
                    return self.err(k.span(), format!("[{section}] kind is \"{other}\"; expected one of: {KINDS}"));
                }
            },
        };
        if let Some((wf, l)) = listener {
            let event = &wf.events[l.event as usize];
            let subscribed = oc.topics.get_ref();
            if let Some(other) = subscribed.iter().find(|t| *t.get_ref() != event.topic) {
                return self.err(
                    other.span(),
                    format!(
                        "[{section}] runs the workflow's listener `{name}` of event `{}` (topic `{}`), but subscribes \
                         to `{}` too; expected topics = [\"{}\"] (a workflow listener takes one event)",
                        event.name,
                        event.topic,
                        other.get_ref(),
                        event.topic
                    ),
                );
            }
        }
        let mut external_outages_ms = Vec::new();
        if let Some(w) = &oc.external_outages_ms {
            for &(start, end) in w.get_ref() {
                if start >= end || end > YEAR_MS {
                    return self.err(
                        w.span(),
                        format!("[{section}] external_outages_ms has [{start}, {end}]; expected [start, end] with start < end, in milliseconds"),
                    );
                }
                external_outages_ms.push((start, end));
            }
        }
        let instances = self.positive_u32(&oc.instances, &format!("{section}.instances"), 1_000)?;
        if oc.topics.get_ref().is_empty() {
            return self.err(
                oc.topics.span(),
                format!("[{section}] topics is empty; expected e.g. topics = [\"order-created\"]"),
            );
        }
        let mut subscribed = Vec::new();
        for t in oc.topics.into_inner() {
            subscribed.push(self.topic_ref(topics, &t, &format!("{section}.topics"))?);
        }
        let consumer_section = format!("{section}.consumer");
        let mut r = self.reader(&consumer_section, oc.consumer);
        let auto_commit_given = r.has("enable.auto.commit");
        let mut consumer = ConsumerConfig::read(&mut r, &name)?;
        let session_span = r.span_of("session.timeout.ms").or(session_bounds.clone()).unwrap_or(table.clone());
        let heartbeat_span = r.span_of("heartbeat.interval.ms").unwrap_or(session_span.clone());
        r.finish()?;
        let strategy_span = oc.commit_strategy.as_ref().map(|s| s.span()).unwrap_or(table.clone());
        let commit_strategy = match oc.commit_strategy {
            None if auto_commit_given && consumer.enable_auto_commit => CommitStrategy::AutoCommit,
            // Spring Kafka (2.3+) sets `enable.auto.commit=false` unless it is given, and its
            // container commits after each poll's records are handled.
            None => {
                consumer.enable_auto_commit = false;
                CommitStrategy::CommitAfterProcess
            }
            Some(s) => {
                let span = s.span();
                let text = s.into_inner();
                let Some(strategy) = CommitStrategy::ALL.into_iter().find(|c| c.name() == text) else {
                    let names: Vec<String> = CommitStrategy::ALL.iter().map(|c| format!("\"{}\"", c.name())).collect();
                    return self
                        .err(span, format!("commit_strategy is \"{text}\"; expected one of {}", names.join(", ")));
                };
                let auto = strategy == CommitStrategy::AutoCommit;
                if auto_commit_given && consumer.enable_auto_commit != auto {
                    let (want, why) =
                        if auto { ("true", "") } else { ("false", " (otherwise the client also commits on its own)") };
                    return self.err(
                        span,
                        format!("commit_strategy \"{text}\" needs `enable.auto.commit = {want}` in [{consumer_section}]{why}"),
                    );
                }
                consumer.enable_auto_commit = auto;
                strategy
            }
        };
        let dlq = commit_strategy == CommitStrategy::RetryThenDlq;
        let dlq_topic = match (&oc.dlq_topic, dlq) {
            (Some(t), true) => Some(self.topic_ref(topics, t, &format!("{section}.dlq_topic"))?),
            (None, true) => {
                return self.err(
                    strategy_span,
                    format!("[{section}] uses retry-then-dlq; expected a dead-letter topic, e.g. dlq_topic = \"order-created.DLT\" (declared in [topics.*])"),
                );
            }
            (Some(t), false) => {
                return self.err(t.span(), format!("[{section}] dlq_topic needs commit_strategy = \"retry-then-dlq\""));
            }
            (None, false) => None,
        };
        if let (Some(r), false) = (&oc.retries, dlq) {
            return self.err(r.span(), format!("[{section}] retries needs commit_strategy = \"retry-then-dlq\""));
        }
        if let Some(r) = &oc.retries
            && *r.get_ref() > i32::MAX as u32
        {
            return self.err(
                r.span(),
                format!("[{section}] retries is {}; expected an integer from 0 to {}", r.get_ref(), i32::MAX),
            );
        }
        let retries = oc.retries.as_ref().map_or(3, |r| *r.get_ref());
        let (min, max) = (broker.group_min_session_timeout_ms, broker.group_max_session_timeout_ms);
        if !(min..=max).contains(&consumer.session_timeout_ms) {
            return self.err(
                session_span,
                format!(
                    "[{consumer_section}]: `session.timeout.ms` is {}; the broker accepts {min} to {max} \
                     (`group.min.session.timeout.ms`, `group.max.session.timeout.ms` in [cluster.config]) and answers \
                     JoinGroup with INVALID_SESSION_TIMEOUT otherwise",
                    consumer.session_timeout_ms
                ),
            );
        }
        if consumer.heartbeat_interval_ms >= consumer.session_timeout_ms {
            return self.err(
                heartbeat_span,
                format!("[{consumer_section}]: `heartbeat.interval.ms` must be lower than `session.timeout.ms` (Kafka requires it)"),
            );
        }
        // The listener's KafkaTemplate (the one its steps publish with, and the dead-letter
        // recoverer's): a setting for one it does not have would be ignored.
        let publishes = listener.is_some_and(|(_, l)| l.handler.publishes());
        if let Some(span) = oc.producer.as_ref().filter(|_| !publishes && dlq_topic.is_none()).map(|p| p.span.clone()) {
            return self.err(
                span.unwrap_or(table),
                format!(
                    "[{section}.producer] configures the listener's KafkaTemplate, but it has none; expected it only \
                     with a listener whose steps publish, or with commit_strategy = \"retry-then-dlq\""
                ),
            );
        }
        let producer = self.producer(&section, oc.producer)?;
        Ok(ConsumerSpec {
            name,
            kind,
            instances,
            topics: subscribed,
            processing_time_us: self.bounded(&oc.processing_time_us, "processing_time_us", HOUR_US)?,
            processing_jitter_us: self.bounded(&oc.processing_jitter_us, "processing_jitter_us", HOUR_US)?,
            handler_error_rate: self.probability(oc.handler_error_rate.as_ref(), "handler_error_rate")?,
            external_outages_ms,
            commit_strategy,
            effect_once: oc.effect_once.unwrap_or(true),
            pause_between_polls_ms: match &oc.pause_between_polls_ms {
                None => 0,
                Some(p) => self.bounded(p, "pause_between_polls_ms", YEAR_MS)?,
            },
            retries,
            dlq_topic,
            consumer,
            producer,
        })
    }
}
