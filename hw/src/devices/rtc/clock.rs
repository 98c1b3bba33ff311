//! Calendar arithmetic for the RTC: seconds since the epoch <-> broken-down UTC time,
//! and parsing of `-rtc base=` values.

use crate::error::{HwError, Result};

/// A broken-down time (UTC-like, no zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Sunday
    pub weekday: u32,
}

/// Days since 1970-01-01 for a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub fn to_seconds(t: &DateTime) -> i64 {
    days_from_civil(t.year, t.month, t.day) * 86400
        + t.hour as i64 * 3600
        + t.minute as i64 * 60
        + t.second as i64
}

pub fn from_seconds(s: i64) -> DateTime {
    let days = s.div_euclid(86400);
    let rem = s.rem_euclid(86400);
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    DateTime {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem / 60 % 60) as u32,
        second: (rem % 60) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
    }
}

/// Host time in seconds and nanoseconds since the epoch.
pub fn host_now() -> (i64, u32) {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(_) => (0, 0),
    }
}

/// The host's offset from UTC in seconds (for `base=localtime`).
pub fn local_utc_offset() -> i64 {
    let (now, _) = host_now();
    let t = now as libc::time_t;
    // SAFETY: a zeroed tm is a valid out-parameter; localtime_r only writes into it.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff
    }
}

/// Where the RTC starts (`-rtc base=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcBase {
    Utc,
    LocalTime,
    /// A fixed start date, seconds since the epoch (the clock runs from there).
    Date(i64),
}

impl RtcBase {
    /// Parses `utc`, `localtime`, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS`.
    pub fn parse(s: &str) -> Result<RtcBase> {
        match s {
            "utc" => return Ok(RtcBase::Utc),
            "localtime" => return Ok(RtcBase::LocalTime),
            _ => {}
        }
        let bad = || {
            HwError::Invalid { what: format!("invalid date format. Valid formats are: '2006-06-17T16:01:21' or '2006-06-17' (got '{s}')") }
        };
        let (date, time) = match s.split_once('T') {
            Some((d, t)) => (d, Some(t)),
            None => (s, None),
        };
        let d: Vec<&str> = date.split('-').collect();
        if d.len() != 3 {
            return Err(bad());
        }
        let year: i64 = d[0].parse().map_err(|_| bad())?;
        let month: u32 = d[1].parse().map_err(|_| bad())?;
        let day: u32 = d[2].parse().map_err(|_| bad())?;
        let (hour, minute, second) = match time {
            Some(t) => {
                let p: Vec<&str> = t.split(':').collect();
                if p.len() != 3 {
                    return Err(bad());
                }
                (
                    p[0].parse().map_err(|_| bad())?,
                    p[1].parse().map_err(|_| bad())?,
                    p[2].parse().map_err(|_| bad())?,
                )
            }
            None => (0, 0, 0),
        };
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 59
            || !(1900..=9999).contains(&year)
        {
            return Err(bad());
        }
        Ok(RtcBase::Date(to_seconds(&DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            weekday: 0,
        })))
    }

    /// Offset to add to host UTC seconds to get the guest RTC's seconds.
    pub fn initial_offset(&self) -> i64 {
        match self {
            RtcBase::Utc => 0,
            RtcBase::LocalTime => local_utc_offset(),
            RtcBase::Date(start) => start - host_now().0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_trip_through_calendar() {
        let t = from_seconds(1_150_560_081); // 2006-06-17T16:01:21Z, a Saturday
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2006, 6, 17, 16, 1, 21)
        );
        assert_eq!(t.weekday, 6);
        assert_eq!(to_seconds(&t), 1_150_560_081);
        assert_eq!(from_seconds(951_782_400).day, 29); // 2000-02-29
    }

    #[test]
    fn base_date_parses_both_forms_and_rejects_garbage() {
        assert_eq!(
            RtcBase::parse("2006-06-17T16:01:21").expect("full"),
            RtcBase::Date(1_150_560_081)
        );
        assert_eq!(
            RtcBase::parse("2006-06-17").expect("date"),
            RtcBase::Date(1_150_502_400)
        );
        assert_eq!(RtcBase::parse("utc").expect("utc"), RtcBase::Utc);
        assert!(RtcBase::parse("2006-13-01").is_err());
        assert!(RtcBase::parse("yesterday").is_err());
    }
}
