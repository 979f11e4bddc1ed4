//! One sentence per chart, computed from the data it draws: what a reader should take from it.

use crate::charts::number;

/// How a line of values moves across the x axis, in words (`rises from 500 at 1 to 3,000 at 12`).
/// Over categories that have no order (`ordered` false: strategies, say) it only says where the
/// values are least and largest.
pub fn trend(xs: &[String], ys: &[f64], unit: &str, ordered: bool) -> String {
    let unit = if unit.is_empty() { String::new() } else { format!(" {unit}") };
    if ys.is_empty() {
        return "has no data".to_string();
    }
    let (lo, hi) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
    if hi == 0.0 {
        return "is 0 throughout".to_string();
    }
    if (hi - lo) <= 0.05 * hi.abs() {
        return format!("stays near {}{unit}", number((hi + lo) / 2.0));
    }
    let (first, last) = (ys[0], ys[ys.len() - 1]);
    let rising = ys.windows(2).all(|w| w[1] >= w[0] - 0.02 * hi);
    let falling = ys.windows(2).all(|w| w[1] <= w[0] + 0.02 * hi);
    let at = |i: usize| xs.get(i).map_or(String::new(), |x| format!(" at {x}"));
    if ordered && rising && last > first {
        format!("rises from {}{unit}{} to {}{unit}{}", number(first), at(0), number(last), at(ys.len() - 1))
    } else if ordered && falling && last < first {
        format!("falls from {}{unit}{} to {}{unit}{}", number(first), at(0), number(last), at(ys.len() - 1))
    } else {
        let imin = ys.iter().position(|&y| y == lo).unwrap_or(0);
        let imax = ys.iter().position(|&y| y == hi).unwrap_or(0);
        format!("ranges from {}{unit}{} to {}{unit}{}", number(lo), at(imin), number(hi), at(imax))
    }
}

/// A chart's sentence for one metric over an axis, series by series:
/// `"With coupons=1, throughput stays near 498 records/s; with coupons=100, it rises ..."`.
/// Each series holds its (x label, value) points; a setting without the figure is left out.
pub fn over_axis(
    metric: &str,
    axis: &str,
    series: &[(String, Vec<(String, f64)>)],
    unit: &str,
    ordered: bool,
) -> String {
    let trend_of = |points: &[(String, f64)]| {
        let labels: Vec<String> = points.iter().map(|(x, _)| format!("{axis} = {x}")).collect();
        let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
        trend(&labels, &ys, unit, ordered)
    };
    if series.len() == 1 && series[0].0.is_empty() {
        return capitalise(&format!("{metric} {}.", trend_of(&series[0].1)));
    }
    let parts: Vec<String> = series
        .iter()
        .enumerate()
        .map(|(k, (name, points))| {
            let subject = if k == 0 { metric.to_string() } else { "it".to_string() };
            format!("with {name}, {subject} {}", trend_of(points))
        })
        .collect();
    capitalise(&format!("{}.", parts.join("; ")))
}

pub fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xs(n: usize) -> Vec<String> {
        (1..=n).map(|i| i.to_string()).collect()
    }

    #[test]
    fn trends_name_flat_rising_falling_and_mixed_lines() {
        assert_eq!(trend(&xs(3), &[0.0, 0.0, 0.0], "records/s", true), "is 0 throughout");
        assert_eq!(trend(&xs(3), &[500.0, 498.0, 502.0], "records/s", true), "stays near 500 records/s");
        assert_eq!(trend(&xs(3), &[1.0, 2.0, 3.0], "", true), "rises from 1 at 1 to 3 at 3");
        assert_eq!(trend(&xs(3), &[3.0, 2.0, 1.0], "%", true), "falls from 3 % at 1 to 1 % at 3");
        assert_eq!(trend(&xs(3), &[1.0, 9.0, 2.0], "", true), "ranges from 1 at 1 to 9 at 2");
        // Strategies have no order: no rising or falling between them.
        assert_eq!(trend(&xs(3), &[3.0, 2.0, 1.0], "", false), "ranges from 1 at 3 to 3 at 1");
    }

    fn points(ys: &[f64]) -> Vec<(String, f64)> {
        xs(ys.len()).into_iter().zip(ys.iter().copied()).collect()
    }

    #[test]
    fn a_sentence_covers_every_series() {
        let s = over_axis(
            "throughput",
            "partitions",
            &[
                ("coupons = 1".into(), points(&[500.0, 500.0, 500.0])),
                ("coupons = 100".into(), points(&[500.0, 1000.0, 1500.0])),
            ],
            "records/s",
            true,
        );
        assert_eq!(
            s,
            "With coupons = 1, throughput stays near 500 records/s; with coupons = 100, it rises from 500 records/s \
             at partitions = 1 to 1,500 records/s at partitions = 3."
        );
        let one = over_axis("throughput", "partitions", &[(String::new(), points(&[1.0, 2.0]))], "", true);
        assert_eq!(one, "Throughput rises from 1 at partitions = 1 to 2 at partitions = 2.");
    }
}
