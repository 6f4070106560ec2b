//! The demo data: towns, industries and names, and the generator of one batch of
//! businesses with their contacts, logs and messages, deterministic for a seed.

use chrono::{DateTime, Duration as TimeDelta, Utc};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Town, county seat area code, latitude, longitude.
pub(super) const TOWNS: &[(&str, &str, f64, f64)] = &[
    ("Freehold", "732", 40.2601, -74.2738),
    ("Red Bank", "732", 40.3471, -74.0643),
    ("Asbury Park", "732", 40.2204, -74.0121),
    ("Long Branch", "732", 40.3043, -73.9924),
    ("Middletown", "732", 40.3951, -74.0824),
    ("Manalapan", "732", 40.2801, -74.3432),
    ("Marlboro", "732", 40.3154, -74.2463),
    ("Holmdel", "732", 40.3451, -74.1840),
    ("Howell", "732", 40.1787, -74.1979),
    ("Wall", "732", 40.1668, -74.0932),
    ("Toms River", "732", 39.9537, -74.1979),
    ("Brick", "732", 40.0584, -74.1099),
    ("Lakewood", "732", 40.0979, -74.2176),
    ("Point Pleasant", "732", 40.0832, -74.0682),
    ("Matawan", "732", 40.4148, -74.2299),
    ("Old Bridge", "732", 40.4148, -74.3654),
    ("New Brunswick", "732", 40.4862, -74.4518),
    ("Edison", "732", 40.5187, -74.4121),
    ("Woodbridge", "732", 40.5576, -74.2846),
    ("Perth Amboy", "732", 40.5068, -74.2654),
    ("Piscataway", "732", 40.5548, -74.4643),
    ("East Brunswick", "732", 40.4279, -74.4157),
    ("Princeton", "609", 40.3573, -74.6672),
    ("Trenton", "609", 40.2206, -74.7597),
    ("Hamilton", "609", 40.2115, -74.6796),
    ("Lawrenceville", "609", 40.2973, -74.7296),
    ("Atlantic City", "609", 39.3643, -74.4229),
    ("Cherry Hill", "856", 39.9348, -75.0307),
    ("Camden", "856", 39.9259, -75.1196),
    ("Vineland", "856", 39.4864, -75.0260),
    ("Morristown", "973", 40.7968, -74.4815),
    ("Parsippany", "973", 40.8579, -74.4260),
    ("Montclair", "973", 40.8259, -74.2090),
    ("Newark", "973", 40.7357, -74.1724),
    ("Paterson", "973", 40.9168, -74.1718),
    ("Wayne", "973", 40.9254, -74.2765),
    ("Livingston", "973", 40.7959, -74.3149),
    ("Jersey City", "201", 40.7178, -74.0431),
    ("Hoboken", "201", 40.7440, -74.0324),
    ("Hackensack", "201", 40.8859, -74.0435),
    ("Paramus", "201", 40.9445, -74.0754),
    ("Fort Lee", "201", 40.8509, -73.9701),
    ("Ridgewood", "201", 40.9793, -74.1166),
    ("Elizabeth", "908", 40.6640, -74.2107),
    ("Summit", "908", 40.7157, -74.3643),
    ("Westfield", "908", 40.6590, -74.3474),
    ("Somerville", "908", 40.5743, -74.6099),
    ("Bridgewater", "908", 40.6007, -74.6482),
    ("Flemington", "908", 40.5123, -74.8593),
    ("Clifton", "973", 40.8584, -74.1638),
];

/// Industry, the noun a business of it is named with, and a Google business type.
pub(super) const INDUSTRIES: &[(&str, &str, &str)] = &[
    ("Dental", "Dental", "dentist"),
    ("Legal", "Law Group", "lawyer"),
    ("Real Estate", "Realty", "real_estate_agency"),
    ("Accounting", "Accounting", "accounting"),
    ("Insurance", "Insurance Agency", "insurance_agency"),
    ("Restaurant", "Grill", "restaurant"),
    ("Automotive", "Auto Repair", "car_repair"),
    ("Construction", "Builders", "general_contractor"),
    ("Landscaping", "Landscaping", "landscaper"),
    ("Fitness", "Fitness", "gym"),
    ("Salon", "Salon", "beauty_salon"),
    ("Chiropractic", "Chiropractic", "chiropractor"),
    ("Veterinary", "Animal Hospital", "veterinary_care"),
    ("Plumbing", "Plumbing & Heating", "plumber"),
    ("HVAC", "Heating & Cooling", "hvac_contractor"),
    ("Marketing", "Marketing", "marketing_agency"),
    ("Financial Planning", "Wealth Partners", "financial_planner"),
    ("Photography", "Photography", "photographer"),
    ("Printing", "Print Shop", "print_shop"),
    ("IT Services", "Tech Solutions", "it_services"),
];

pub(super) const NAME_PREFIXES: &[&str] = &[
    "",
    "",
    "",
    "Family",
    "Premier",
    "Shore",
    "Garden State",
    "Main Street",
    "Coastal",
    "Central Jersey",
    "Elite",
    "Hometown",
    "Summit",
    "Pinnacle",
    "Liberty",
    "Heritage",
];
pub(super) const STREETS: &[&str] = &[
    "Main St",
    "Broad St",
    "Park Ave",
    "Route 9",
    "Route 35",
    "Washington St",
    "Maple Ave",
    "Ocean Ave",
    "Church St",
    "Highway 34",
    "Center St",
    "Union Ave",
];
pub(super) const FIRST_NAMES: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Maria",
    "Daniel",
    "Priya",
    "Wei",
    "Carlos",
    "Aisha",
];
pub(super) const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Russo",
    "Esposito",
    "Patel",
    "Shah",
    "Kim",
    "Nguyen",
    "Murphy",
    "O'Brien",
    "Cohen",
    "Kowalski",
];
pub(super) const TITLES: &[&str] = &[
    "Owner",
    "Office Manager",
    "President",
    "Managing Partner",
    "Practice Manager",
    "General Manager",
    "Marketing Director",
    "Operations Manager",
];
pub(super) const SERVICES: &[&str] = &["google_places", "hunter", "apollo", "clearbit"];
pub(super) const OPENERS: &[&str] = &[
    "I came across {name} while looking at {industry} businesses in {city}",
    "Fellow Le Tip members in {city} have mentioned {name}",
    "I noticed {name} has been serving {city} for a while",
];

#[derive(Default)]
pub(super) struct Batch {
    pub(super) ids: Vec<i32>,
    pub(super) name: Vec<String>,
    pub(super) address: Vec<Option<String>>,
    pub(super) city: Vec<Option<String>>,
    pub(super) zip: Vec<Option<String>>,
    pub(super) phone: Vec<Option<String>>,
    pub(super) website: Vec<Option<String>>,
    pub(super) business_type: Vec<Option<String>>,
    pub(super) industry: Vec<Option<String>>,
    pub(super) employee_count: Vec<Option<i32>>,
    pub(super) year_founded: Vec<Option<i32>>,
    pub(super) maps_url: Vec<Option<String>>,
    pub(super) latitude: Vec<Option<f64>>,
    pub(super) longitude: Vec<Option<f64>>,
    pub(super) status: Vec<String>,
    pub(super) created_at: Vec<DateTime<Utc>>,

    pub(super) c_id: Vec<i32>,
    pub(super) c_business: Vec<i32>,
    pub(super) c_name: Vec<Option<String>>,
    pub(super) c_title: Vec<Option<String>>,
    pub(super) c_email: Vec<Option<String>>,
    pub(super) c_verified: Vec<bool>,
    pub(super) c_phone: Vec<Option<String>>,
    pub(super) c_linkedin: Vec<Option<String>>,
    pub(super) c_primary: Vec<bool>,
    pub(super) c_created: Vec<DateTime<Utc>>,

    pub(super) l_business: Vec<i32>,
    pub(super) l_service: Vec<String>,
    pub(super) l_status: Vec<String>,
    pub(super) l_error: Vec<Option<String>>,
    pub(super) l_created: Vec<DateTime<Utc>>,

    pub(super) m_business: Vec<i32>,
    pub(super) m_contact: Vec<Option<i32>>,
    pub(super) m_text: Vec<String>,
    pub(super) m_generated: Vec<DateTime<Utc>>,
    pub(super) m_sent: Vec<Option<DateTime<Utc>>>,
    pub(super) m_status: Vec<String>,
}

pub(super) fn slug(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase()
}

pub(super) fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    // Every list above is a non-empty constant.
    items.choose(rng).expect("non-empty constant list")
}

/// Contacts of the seed's first business: its detail passes a megabyte.
pub(super) const LARGEST_CONTACTS: usize = 5_000;

/// Generates businesses `first..first + count` of the seed's sequence. Ids are given by
/// the database later; here each business knows only its position in the batch.
pub(super) fn generate(seed: u64, first: u64, count: usize, now: DateTime<Utc>) -> Batch {
    let mut b = Batch::default();
    for i in first..first + count as u64 {
        // One generator per business: the data of business `i` depends on nothing else.
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i);
        let &(city, area, lat, lng) = pick(&mut rng, TOWNS);
        let &(industry, noun, kind) = pick(&mut rng, INDUSTRIES);
        let prefix = *pick(&mut rng, NAME_PREFIXES);
        let name = match rng.random_range(0..3) {
            0 if !prefix.is_empty() => format!("{prefix} {noun}"),
            1 => format!("{} {noun}", pick(&mut rng, LAST_NAMES)),
            _ => format!("{city} {noun}"),
        };
        let domain = format!("{}{}.com", slug(&name), i + 1);
        let name = format!("{name} #{}", i + 1);
        let pos = b.name.len() as i32;
        // Newest businesses last: position in the sequence maps to age (up to two years).
        let created = now - TimeDelta::seconds(rng.random_range(0..63_072_000));
        let roll = rng.random_range(0..100);
        let status = match roll {
            0..60 => "pending",
            60..95 => "enriched",
            _ => "failed",
        };
        b.ids.push(pos);
        b.name.push(name.clone());
        b.address.push(Some(format!(
            "{} {}",
            rng.random_range(1..2000),
            pick(&mut rng, STREETS)
        )));
        b.city.push(Some(city.to_owned()));
        b.zip
            .push(Some(format!("0{}", rng.random_range(7001..8999))));
        b.phone.push(Some(format!(
            "({area}) 555-{:04}",
            rng.random_range(0..10_000)
        )));
        b.website.push(
            rng.random_bool(0.8)
                .then(|| format!("https://www.{domain}")),
        );
        b.business_type.push(Some(kind.to_owned()));
        b.industry.push(Some(industry.to_owned()));
        b.employee_count.push(Some(rng.random_range(1..250)));
        b.year_founded.push(Some(rng.random_range(1950..2026)));
        b.maps_url.push(Some(format!(
            "https://maps.google.com/?cid={}",
            rng.random::<u64>()
        )));
        b.latitude.push(Some(lat + rng.random_range(-0.02..0.02)));
        b.longitude.push(Some(lng + rng.random_range(-0.02..0.02)));
        b.status.push(status.to_owned());
        b.created_at.push(created);

        // About two contacts per business, one of them primary; the first business has
        // thousands (a detail over a megabyte, which the cache must hold whole).
        let contacts = if i == 0 {
            LARGEST_CONTACTS
        } else {
            rng.random_range(0..=4)
        };
        let first_contact = b.c_business.len();
        for c in 0..contacts {
            let first_name = *pick(&mut rng, FIRST_NAMES);
            let last_name = *pick(&mut rng, LAST_NAMES);
            b.c_id.push(0);
            b.c_business.push(pos);
            b.c_name.push(Some(format!("{first_name} {last_name}")));
            b.c_title.push(Some((*pick(&mut rng, TITLES)).to_owned()));
            b.c_email.push(Some(format!(
                "{}.{}@{domain}",
                slug(first_name),
                slug(last_name)
            )));
            b.c_verified.push(rng.random_bool(0.5));
            b.c_phone.push(
                rng.random_bool(0.6)
                    .then(|| format!("({area}) 555-{:04}", rng.random_range(0..10_000))),
            );
            b.c_linkedin.push(rng.random_bool(0.4).then(|| {
                format!(
                    "https://www.linkedin.com/in/{}-{}",
                    slug(first_name),
                    slug(last_name)
                )
            }));
            b.c_primary.push(c == 0);
            b.c_created
                .push(created + TimeDelta::minutes(rng.random_range(1..10_000)));
        }

        // Enriched and failed businesses have the logs of their runs.
        if status != "pending" {
            for _ in 0..rng.random_range(1..=3) {
                let failed = status == "failed" && rng.random_bool(0.7);
                b.l_business.push(pos);
                b.l_service.push((*pick(&mut rng, SERVICES)).to_owned());
                b.l_status
                    .push(if failed { "error" } else { "success" }.to_owned());
                b.l_error
                    .push(failed.then(|| "upstream returned 429 Too Many Requests".to_owned()));
                b.l_created
                    .push(created + TimeDelta::minutes(rng.random_range(1..20_000)));
            }
        }

        // About three messages per business: 50% generated, 40% sent, 10% failed.
        for _ in 0..rng.random_range(0..=6) {
            let contact = (contacts > 0)
                .then(|| first_contact + rng.random_range(0..contacts))
                .filter(|_| rng.random_bool(0.8));
            let generated = created + TimeDelta::minutes(rng.random_range(1..40_000));
            let roll = rng.random_range(0..10);
            let (mstatus, sent) = match roll {
                0..5 => ("generated", None),
                5..9 => (
                    "sent",
                    Some(generated + TimeDelta::minutes(rng.random_range(1..600))),
                ),
                _ => ("failed", None),
            };
            let opener = pick(&mut rng, OPENERS)
                .replace("{name}", &name)
                .replace("{industry}", &industry.to_ascii_lowercase())
                .replace("{city}", city);
            b.m_business.push(pos);
            b.m_contact
                .push(contact.and_then(|c| i32::try_from(c).ok()));
            b.m_text.push(format!(
                "Hi, {opener}. Our Le Tip chapter meets weekly to pass referrals between local \
                 professionals, and we have no {} member yet. Would you join us as a guest?",
                industry.to_ascii_lowercase()
            ));
            b.m_generated.push(generated);
            b.m_sent.push(sent);
            b.m_status.push(mstatus.to_owned());
        }
    }
    b
}
