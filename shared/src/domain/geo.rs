//! The province of a place named in a Chinese trace line.
//!
//! Analytics group parcels by origin and destination province. Carriers name places by city
//! (`【杭州市】`, `杭州转运中心`), sometimes with the province first (Yunda's `浙江杭州分拨中心`),
//! so a place is looked up as a province name, then as a city. The 34 provincial-level divisions
//! (23 provinces, 4 municipalities, 5 autonomous regions, 2 special administrative regions) are
//! listed with their full names, common names, one-character abbreviations (简称) and pinyin, as
//! the Administrative Division Code list of the Ministry of Civil Affairs and GB/T 2260 give them.
//! A province is identified by its common name (`浙江`, `内蒙古`, `香港`).

use super::shipment::Shipment;
use super::status::Status;
use super::trace::{EventKey, TraceEvent};

/// One provincial-level division.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Province {
    /// Common name, the identifier used in keys and answers: `浙江`.
    pub name: &'static str,
    /// Official name: `浙江省`.
    pub full: &'static str,
    /// One-character abbreviations (简称); the first is the one on licence plates.
    pub abbr: &'static [&'static str],
    /// Pinyin / English name: `Zhejiang`.
    pub en: &'static str,
}

const fn p(
    name: &'static str,
    full: &'static str,
    abbr: &'static [&'static str],
    en: &'static str,
) -> Province {
    Province {
        name,
        full,
        abbr,
        en,
    }
}

/// All 34 provincial-level divisions, in the order of their GB/T 2260 codes (11 Beijing … 82 Macao).
pub const PROVINCES: [Province; 34] = [
    p("北京", "北京市", &["京"], "Beijing"),
    p("天津", "天津市", &["津"], "Tianjin"),
    p("河北", "河北省", &["冀"], "Hebei"),
    p("山西", "山西省", &["晋"], "Shanxi"),
    p("内蒙古", "内蒙古自治区", &["蒙"], "Inner Mongolia"),
    p("辽宁", "辽宁省", &["辽"], "Liaoning"),
    p("吉林", "吉林省", &["吉"], "Jilin"),
    p("黑龙江", "黑龙江省", &["黑"], "Heilongjiang"),
    p("上海", "上海市", &["沪"], "Shanghai"),
    p("江苏", "江苏省", &["苏"], "Jiangsu"),
    p("浙江", "浙江省", &["浙"], "Zhejiang"),
    p("安徽", "安徽省", &["皖"], "Anhui"),
    p("福建", "福建省", &["闽"], "Fujian"),
    p("江西", "江西省", &["赣"], "Jiangxi"),
    p("山东", "山东省", &["鲁"], "Shandong"),
    p("河南", "河南省", &["豫"], "Henan"),
    p("湖北", "湖北省", &["鄂"], "Hubei"),
    p("湖南", "湖南省", &["湘"], "Hunan"),
    p("广东", "广东省", &["粤"], "Guangdong"),
    p("广西", "广西壮族自治区", &["桂"], "Guangxi"),
    p("海南", "海南省", &["琼"], "Hainan"),
    p("重庆", "重庆市", &["渝"], "Chongqing"),
    p("四川", "四川省", &["川", "蜀"], "Sichuan"),
    p("贵州", "贵州省", &["贵", "黔"], "Guizhou"),
    p("云南", "云南省", &["云", "滇"], "Yunnan"),
    p("西藏", "西藏自治区", &["藏"], "Tibet"),
    p("陕西", "陕西省", &["陕", "秦"], "Shaanxi"),
    p("甘肃", "甘肃省", &["甘", "陇"], "Gansu"),
    p("青海", "青海省", &["青"], "Qinghai"),
    p("宁夏", "宁夏回族自治区", &["宁"], "Ningxia"),
    p("新疆", "新疆维吾尔自治区", &["新"], "Xinjiang"),
    p("台湾", "台湾省", &["台"], "Taiwan"),
    p("香港", "香港特别行政区", &["港"], "Hong Kong"),
    p("澳门", "澳门特别行政区", &["澳"], "Macao"),
];

/// Prefecture-level cities (without `市`) and their province: every city the sandbox's journeys
/// use, every provincial capital, and the large express hubs and e-commerce cities.
const CITIES: &[(&str, &str)] = &[
    // The sandbox's journeys (local/src/sandbox/journey.rs) outside the municipalities.
    ("广州", "广东"),
    ("深圳", "广东"),
    ("杭州", "浙江"),
    ("金华", "浙江"),
    ("成都", "四川"),
    ("武汉", "湖北"),
    ("南京", "江苏"),
    ("苏州", "江苏"),
    ("西安", "陕西"),
    ("长沙", "湖南"),
    ("郑州", "河南"),
    ("青岛", "山东"),
    ("厦门", "福建"),
    ("沈阳", "辽宁"),
    ("昆明", "云南"),
    ("合肥", "安徽"),
    // Provincial capitals not listed above.
    ("石家庄", "河北"),
    ("太原", "山西"),
    ("呼和浩特", "内蒙古"),
    ("长春", "吉林"),
    ("哈尔滨", "黑龙江"),
    ("福州", "福建"),
    ("南昌", "江西"),
    ("济南", "山东"),
    ("南宁", "广西"),
    ("海口", "海南"),
    ("贵阳", "贵州"),
    ("拉萨", "西藏"),
    ("兰州", "甘肃"),
    ("西宁", "青海"),
    ("银川", "宁夏"),
    ("乌鲁木齐", "新疆"),
    ("台北", "台湾"),
    // Large cities and express hubs.
    ("宁波", "浙江"),
    ("温州", "浙江"),
    ("义乌", "浙江"),
    ("嘉兴", "浙江"),
    ("绍兴", "浙江"),
    ("台州", "浙江"),
    ("湖州", "浙江"),
    ("无锡", "江苏"),
    ("常州", "江苏"),
    ("南通", "江苏"),
    ("徐州", "江苏"),
    ("扬州", "江苏"),
    ("东莞", "广东"),
    ("佛山", "广东"),
    ("珠海", "广东"),
    ("中山", "广东"),
    ("惠州", "广东"),
    ("汕头", "广东"),
    ("揭阳", "广东"),
    ("大连", "辽宁"),
    ("烟台", "山东"),
    ("潍坊", "山东"),
    ("临沂", "山东"),
    ("泉州", "福建"),
    ("唐山", "河北"),
    ("保定", "河北"),
    ("廊坊", "河北"),
    ("洛阳", "河南"),
    ("芜湖", "安徽"),
    ("绵阳", "四川"),
    ("宜昌", "湖北"),
    ("襄阳", "湖北"),
    ("株洲", "湖南"),
    ("桂林", "广西"),
    ("大理", "云南"),
    ("赣州", "江西"),
    ("包头", "内蒙古"),
];

/// The division whose common name is `name`.
pub fn by_name(name: &str) -> Option<&'static Province> {
    PROVINCES.iter().find(|p| p.name == name)
}

/// A province as a person or a query string names it: common or full name, abbreviation, or
/// pinyin (any case, spaces ignored). `None` for anything else.
pub fn parse_province(s: &str) -> Option<&'static Province> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let folded: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase();
    PROVINCES.iter().find(|p| {
        p.name == s
            || p.full == s
            || p.abbr.contains(&s)
            || p.en.replace(' ', "").to_lowercase() == folded
            || s.strip_suffix('省') == Some(p.name)
    })
}

/// The province of a place name: a province (`浙江省`, `浙江`), a city (`杭州市`, `杭州`), or a
/// longer text naming one (`浙江杭州分拨中心`, `【杭州市】快件已到达【杭州转运中心】`). The
/// name that starts earliest wins, the longest one on a tie; a text naming none is `None`.
pub fn province_of(text: &str) -> Option<&'static Province> {
    let mut best: Option<(usize, usize, &'static str)> = None;
    let mut consider = |needle: &str, province: &'static str| {
        if let Some(at) = text.find(needle) {
            let better = match best {
                None => true,
                Some((b_at, b_len, _)) => at < b_at || (at == b_at && needle.len() > b_len),
            };
            if better {
                best = Some((at, needle.len(), province));
            }
        }
    };
    for p in &PROVINCES {
        consider(p.name, p.name);
    }
    for (city, province) in CITIES {
        consider(city, province);
    }
    best.and_then(|(_, _, name)| by_name(name))
}

/// The province of a trace line: its location field first, else its text.
pub fn province_of_line(location: Option<&str>, description: &str) -> Option<&'static Province> {
    location
        .and_then(province_of)
        .or_else(|| province_of(description))
}

/// Statuses whose scans happen in the destination city.
fn at_destination(s: Status) -> bool {
    matches!(
        s,
        Status::ArrivedAtDestinationCity
            | Status::OutForDelivery
            | Status::AvailableForPickup
            | Status::DeliveryFailed
            | Status::Delivered
    )
}

/// Note where and when the journey started and where it ends, from the lines a check added
/// (ascending). The first scan (a line that is not a mere "label created") gives the pickup
/// time and the origin; the newest line, once the parcel is on the destination side, gives the
/// destination. A value once known is kept: later lines never move it (an earlier scan that
/// arrives late does: the journey started there).
pub fn note_route(s: &mut Shipment, new_events: &[(EventKey, TraceEvent)]) {
    // The earliest scan wins, whichever check brought it: a line that arrives late (a reordered
    // or gap-filling answer) still starts the journey where it started.
    let first_scan = new_events
        .iter()
        .map(|(_, e)| e)
        .find(|e| !matches!(e.status, Some(Status::Pending) | Some(Status::InfoReceived)));
    if let Some(e) = first_scan {
        if s.picked_up_at.is_none_or(|p| e.time < p) {
            s.picked_up_at = Some(e.time);
            if let Some(p) = province_of_line(e.location.as_deref(), &e.description) {
                s.origin = Some(p.name.to_string());
            }
        }
    }
    if s.destination.is_none() && at_destination(s.status) {
        if let Some((_, e)) = new_events.last() {
            s.destination =
                province_of_line(e.location.as_deref(), &e.description).map(|p| p.name.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_34_divisions_with_unique_names_and_abbreviations() {
        assert_eq!(PROVINCES.len(), 34);
        let mut names: Vec<&str> = PROVINCES.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 34);
        let mut abbr: Vec<&str> = PROVINCES
            .iter()
            .flat_map(|p| p.abbr.iter().copied())
            .collect();
        let n = abbr.len();
        abbr.sort();
        abbr.dedup();
        assert_eq!(abbr.len(), n, "an abbreviation names two divisions");
        for p in &PROVINCES {
            assert!(p.full.starts_with(p.name), "{}", p.full);
            assert_eq!(parse_province(p.full).map(|x| x.name), Some(p.name));
            assert_eq!(parse_province(p.en).map(|x| x.name), Some(p.name));
            assert_eq!(province_of(p.full).map(|x| x.name), Some(p.name));
        }
        // Four municipalities, five autonomous regions, two SARs, 23 provinces.
        let count = |suffix: &str| {
            PROVINCES
                .iter()
                .filter(|p| p.full.ends_with(suffix))
                .count()
        };
        assert_eq!(count("市"), 4);
        assert_eq!(count("自治区"), 5);
        assert_eq!(count("特别行政区"), 2);
        assert_eq!(count("省"), 23);
    }

    #[test]
    fn every_city_maps_to_a_listed_division() {
        for (city, province) in CITIES {
            assert!(by_name(province).is_some(), "{city} → {province}");
            assert_eq!(province_of(city).map(|p| p.name), Some(*province), "{city}");
            assert_eq!(
                province_of(&format!("{city}市")).map(|p| p.name),
                Some(*province)
            );
        }
    }

    #[test]
    fn the_sandbox_cities_and_real_trace_texts() {
        for (text, want) in [
            ("杭州市", "浙江"),
            ("北京市", "北京"),
            ("重庆市", "重庆"),
            ("深圳市", "广东"),
            ("金华市", "浙江"),
            ("【重庆市】重庆九龙坡公司 已揽收", "重庆"),
            ("浙江杭州分拨中心", "浙江"),
            ("快件到达【广州白云中转场】", "广东"),
            (
                "【苏州市】快件离开【苏州转运中心】已发往【西安转运中心】",
                "江苏",
            ),
            ("内蒙古呼和浩特市", "内蒙古"),
            ("台州市", "浙江"),
        ] {
            assert_eq!(province_of(text).map(|p| p.name), Some(want), "{text}");
        }
        assert_eq!(province_of("快件已签收"), None);
        assert_eq!(province_of(""), None);
        assert_eq!(
            province_of_line(Some("长沙市"), "【北京市】…").map(|p| p.name),
            Some("湖南")
        );
        assert_eq!(
            province_of_line(None, "【北京市】已揽收").map(|p| p.name),
            Some("北京")
        );
    }

    #[test]
    fn query_strings_name_provinces_many_ways() {
        for s in ["浙江", "浙江省", "浙", "zhejiang", "Zhejiang", " ZHEJIANG "] {
            assert_eq!(parse_province(s).map(|p| p.name), Some("浙江"), "{s}");
        }
        assert_eq!(
            parse_province("inner mongolia").map(|p| p.name),
            Some("内蒙古")
        );
        assert_eq!(parse_province("黔").map(|p| p.name), Some("贵州"));
        assert_eq!(parse_province("Atlantis"), None);
        assert_eq!(parse_province(""), None);
        // Shanxi and Shaanxi are two provinces.
        assert_ne!(parse_province("Shanxi"), parse_province("Shaanxi"));
    }

    #[test]
    fn a_journey_notes_its_origin_pickup_time_and_destination() {
        use crate::domain::{
            decide, CheckContext, Observation, Priority, Recipient, ShipmentId, SubStatus,
            TraceSnapshot,
        };
        let apply_check = |s: &Shipment, snap: &TraceSnapshot, now| {
            decide(
                s,
                Observation::poll(snap, "kdniao"),
                &CheckContext::standalone(),
                now,
            )
        };
        use chrono::{TimeZone, Utc};
        let t = |h: u32| Utc.with_ymd_and_hms(2026, 11, 24, h, 0, 0).unwrap();
        let line = |h, desc: &str, loc: Option<&str>, st: Option<Status>| TraceEvent {
            time: t(h),
            description: desc.into(),
            location: loc.map(String::from),
            status: st,
            raw_code: None,
            claimed_time: None,
        };
        let snap = |status, events: Vec<TraceEvent>| TraceSnapshot {
            status,
            sub_status: Some(SubStatus::new("kdniao", "x")),
            events,
        };
        let s = Shipment::register(
            ShipmentId::parse("YTO", "YT7412345678901").unwrap(),
            Priority::Normal,
            "kdniao",
            Recipient::default(),
            None,
            t(0),
        );
        let mut lines = vec![
            line(1, "电子面单已打印", None, Some(Status::InfoReceived)),
            line(2, "【杭州市】浙江杭州萧山公司 已揽收", Some("杭州市"), None),
            line(
                5,
                "【杭州市】快件离开【杭州转运中心】已发往【成都转运中心】",
                None,
                None,
            ),
        ];
        let a = apply_check(&s, &snap(Status::InTransit, lines.clone()), t(6)).updated;
        assert_eq!(a.picked_up_at, Some(t(2)), "the label line is not a scan");
        assert_eq!(a.origin.as_deref(), Some("浙江"));
        assert_eq!(a.destination, None, "still in transit");
        lines.push(line(
            9,
            "【成都市】快件已到达【成都转运中心】",
            Some("成都市"),
            None,
        ));
        let b = apply_check(
            &a,
            &snap(Status::ArrivedAtDestinationCity, lines.clone()),
            t(10),
        )
        .updated;
        assert_eq!(b.destination.as_deref(), Some("四川"));
        assert_eq!(b.picked_up_at, Some(t(2)));
        // Later lines never move what is known.
        lines.push(line(12, "【重庆市】派件中", Some("重庆市"), None));
        let c = apply_check(&b, &snap(Status::OutForDelivery, lines), t(13)).updated;
        assert_eq!(c.destination.as_deref(), Some("四川"));
        assert_eq!(c.origin.as_deref(), Some("浙江"));
    }
}
