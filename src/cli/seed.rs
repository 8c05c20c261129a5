//! `cdcview seed`: realistic fake shop data, inserted in batches.

use anyhow::Context;
use clap::Args;
use fake::faker::address::en::{BuildingNumber, CityName, CountryName, StateName, StreetName, ZipCode};
use fake::faker::name::en::{FirstName, LastName};
use fake::Fake;
use indicatif::{ProgressBar, ProgressStyle};
use mysql_async::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Args, Debug)]
pub struct SeedArgs {
    /// MySQL URL of the shop database.
    #[arg(long, env = "CDCVIEW_MYSQL_URL", default_value = "mysql://cdcview:cdcview@127.0.0.1:3307/shop")]
    pub mysql_url: String,
    /// Users to have in total: seeding adds only what is missing, so running it twice adds nothing.
    #[arg(long, default_value_t = 20)]
    pub users: u64,
    /// Each user gets 1 to this many orders.
    #[arg(long, default_value_t = 3)]
    pub max_orders: u32,
    /// Each order gets 1 to this many items.
    #[arg(long, default_value_t = 2)]
    pub max_items: u32,
    /// Seed of the random generator, for repeatable data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Users per transaction.
    #[arg(long, default_value_t = 1000)]
    pub batch: u64,
}

const ADJECTIVES: &[&str] = &["Sleek", "Modern", "Rustic", "Handcrafted", "Ergonomic", "Practical", "Gorgeous", "Elegant", "Recycled", "Tasty"];
const MATERIALS: &[&str] = &["Cotton", "Steel", "Wooden", "Granite", "Plastic", "Rubber", "Bronze", "Fresh", "Frozen", "Soft"];
const PRODUCTS: &[&str] = &["Hat", "Chips", "Chair", "Table", "Pizza", "Salad", "Shoes", "Gloves", "Towels", "Cheese", "Keyboard", "Bike"];

pub async fn run(args: SeedArgs) -> anyhow::Result<()> {
    let pool = crate::api::mysql_pool(&args.mysql_url).context("invalid --mysql-url")?;
    let mut conn = pool.get_conn().await.with_context(|| format!("cannot connect to MySQL at {}", redact(&args.mysql_url)))?;
    let existing: u64 = conn.query_first("SELECT COUNT(*) FROM users").await.context("cannot count users: is the shop schema loaded?")?.unwrap_or(0);
    if existing >= args.users {
        println!("shop already has {existing} users (wanted {}); nothing to seed", args.users);
        drop(conn);
        pool.disconnect().await?;
        return Ok(());
    }
    let missing = args.users - existing;
    let bar = ProgressBar::new(missing).with_style(ProgressStyle::with_template("seeding {bar:30} {pos}/{len} users {per_sec} eta {eta}")?);
    let mut rng = StdRng::seed_from_u64(args.seed ^ existing);
    let (mut orders, mut items) = (0u64, 0u64);
    let mut done = 0;
    while done < missing {
        let n = args.batch.min(missing - done);
        let (o, i) = insert_batch(&mut conn, &mut rng, existing + done, n, &args).await?;
        orders += o;
        items += i;
        done += n;
        bar.inc(n);
    }
    bar.finish_and_clear();
    println!("seeded {missing} users with an address each, {orders} orders and {items} items");
    // The pool only disconnects once every connection is back.
    drop(conn);
    pool.disconnect().await?;
    Ok(())
}

/// Inserts `n` users (numbered from `first`) with their addresses, orders and
/// items, as one transaction.
async fn insert_batch(conn: &mut mysql_async::Conn, rng: &mut StdRng, first: u64, n: u64, args: &SeedArgs) -> anyhow::Result<(u64, u64)> {
    let mut tx = conn.start_transaction(mysql_async::TxOpts::default()).await?;
    let users: Vec<(String, String, String)> = (0..n)
        .map(|k| {
            let (first_name, last_name): (String, String) = (FirstName().fake_with_rng(rng), LastName().fake_with_rng(rng));
            let email = format!("{}.{}{}@example.com", first_name.to_lowercase(), last_name.to_lowercase(), first + k + 1);
            let phone = format!("{}", rng.random_range(2_000_000_000u64..9_999_999_999));
            (format!("{first_name} {last_name}"), email, phone)
        })
        .collect();
    tx.exec_drop(
        multi_insert("users (name, email, phone)", 3, users.len()),
        users.iter().flat_map(|(a, b, c)| [a.clone(), b.clone(), c.clone()]).collect::<Vec<_>>(),
    )
    .await?;
    let first_user = tx.last_insert_id().context("no user id returned")?;
    let user_ids: Vec<u64> = (first_user..first_user + n).collect();

    let mut addr: Vec<mysql_async::Value> = Vec::new();
    for &uid in &user_ids {
        let street = format!("{} {}", BuildingNumber().fake_with_rng::<String, _>(rng), StreetName().fake_with_rng::<String, _>(rng));
        let city: String = CityName().fake_with_rng(rng);
        let state: String = StateName().fake_with_rng(rng);
        let zip: String = ZipCode().fake_with_rng(rng);
        let country: String = CountryName().fake_with_rng(rng);
        addr.extend([uid.into(), street.into(), city.into(), state.into(), zip.into(), country.into()]);
    }
    tx.exec_drop(multi_insert("addresses (user_id, street, city, state, postal_code, country)", 6, user_ids.len()), addr).await?;

    let mut order_rows: Vec<mysql_async::Value> = Vec::new();
    let mut order_count = 0;
    for &uid in &user_ids {
        for _ in 0..rng.random_range(1..=args.max_orders.max(1)) {
            let total = format!("{}.{:02}", rng.random_range(5..500), rng.random_range(0..100));
            order_rows.extend([uid.into(), total.into(), "Created".into()]);
            order_count += 1;
        }
    }
    tx.exec_drop(multi_insert("orders (user_id, total, order_status)", 3, order_count), order_rows).await?;
    let first_order = tx.last_insert_id().context("no order id returned")?;

    let mut item_rows: Vec<mysql_async::Value> = Vec::new();
    let mut item_count = 0;
    for order_id in first_order..first_order + order_count as u64 {
        for _ in 0..rng.random_range(1..=args.max_items.max(1)) {
            let name = format!("{} {} {}", pick(rng, ADJECTIVES), pick(rng, MATERIALS), pick(rng, PRODUCTS));
            let price = format!("{}.{:02}", rng.random_range(1..100), rng.random_range(0..100));
            item_rows.extend([order_id.into(), name.into(), rng.random_range(1..10i64).into(), price.into()]);
            item_count += 1;
        }
    }
    tx.exec_drop(multi_insert("order_items (order_id, name, quantity, price)", 4, item_count), item_rows).await?;
    tx.commit().await?;
    Ok((order_count as u64, item_count as u64))
}

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

/// `INSERT INTO table (cols) VALUES (?, ?), (?, ?), ...` for `rows` rows.
fn multi_insert(table_and_cols: &str, width: usize, rows: usize) -> String {
    let one = format!("({})", vec!["?"; width].join(", "));
    format!("INSERT INTO {table_and_cols} VALUES {}", vec![one; rows].join(", "))
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}@{}", &url[..s + 3], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
