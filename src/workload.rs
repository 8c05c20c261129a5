//! Generated shop states and change streams, for benchmarks and load tests.

use fake::faker::address::en::{BuildingNumber, CityName, CountryName, StateName, StreetName, ZipCode};
use fake::faker::name::en::{FirstName, LastName};
use fake::Fake;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use rust_decimal::Decimal;
use smol_str::format_smolstr;

use crate::change::{Address, Change, Item, Order, RowChange, SourcePos, StatusEvent, TableChange, Timestamp, User};

/// Sizes of the initial state.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub users: i64,
    pub orders: i64,
    pub items: i64,
    pub events: i64,
}

/// Which stream of changes follows the initial state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// Updates of items, orders and users, status events, new addresses, item
    /// moves and deletes, on uniformly drawn keys; short text; no user, order
    /// or address is ever created or deleted.
    Steady,
    /// A shop's day: inserts and deletes of every table, updates, status
    /// events, on Zipf-skewed keys (hot orders and items, s = 1.1; buyers,
    /// s = 0.8);
    /// names, e-mails, addresses and item names of realistic length (made by
    /// `fake`, mostly over the 23 bytes kept inline); and about one change in
    /// eight a no-op for the view (a rewrite of a row with the same values, a
    /// status event older than the order's newest).
    Churn,
}

/// The kinds of change of [`Mix::Steady`], each with its share of the
/// stream (in percent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum SteadyKind {
    /// An item's update, moving it to another order drawn at random: 25%.
    ItemUpdate,
    /// An order's update, same user: 20%.
    OrderUpdate,
    /// A status event of an order: 25%.
    StatusEvent,
    /// A new address of a user: 8%.
    AddressInsert,
    /// A user's update: 10%.
    UserUpdate,
    /// An order's update moving it to another user: 7%.
    OrderMove,
    /// An item deleted, or inserted again when deleted before: 5%.
    ItemDeleteOrInsert,
}

impl SteadyKind {
    /// Each kind with its share, in the order a roll of 0..100 is read.
    const SHARES: [(SteadyKind, u32); 7] = [
        (SteadyKind::ItemUpdate, 25),
        (SteadyKind::OrderUpdate, 20),
        (SteadyKind::StatusEvent, 25),
        (SteadyKind::AddressInsert, 8),
        (SteadyKind::UserUpdate, 10),
        (SteadyKind::OrderMove, 7),
        (SteadyKind::ItemDeleteOrInsert, 5),
    ];

    /// The kind a roll of 0..100 draws.
    fn of_roll(mut roll: u32) -> SteadyKind {
        for (kind, share) in Self::SHARES {
            if roll < share {
                return kind;
            }
            roll -= share;
        }
        unreachable!("the shares add up to 100")
    }
}

/// Keeps the current rows so that updates and deletes carry a true `before`.
pub struct Workload {
    rng: StdRng,
    sizes: Sizes,
    mix: Mix,
    /// [`Mix::Steady`] with changes of this kind alone (see [`Workload::only`]).
    only: Option<SteadyKind>,
    users: Vec<Option<User>>,
    addresses: Vec<Option<Address>>,
    orders: Vec<Option<Order>>,
    items: Vec<Option<Item>>,
    next_address: i64,
    next_event: i64,
    offsets: [i64; 5],
}

/// Picks an index below `len`, most often a low one (Zipf with exponent `s`).
fn zipf_index(rng: &mut StdRng, len: usize, s: f64) -> usize {
    let zipf = Zipf::new(len.max(1) as f64, s).expect("n >= 1 and s > 0");
    (zipf.sample(rng) as usize).clamp(1, len.max(1)) - 1
}

const ADJECTIVES: [&str; 8] = ["Ergonomic", "Rustic", "Sleek", "Practical", "Handcrafted", "Incredible", "Refined", "Licensed"];
const MATERIALS: [&str; 8] = ["Granite", "Cotton", "Steel", "Wooden", "Rubber", "Frozen", "Plastic", "Bronze"];
const PRODUCTS: [&str; 8] = ["Keyboard", "Chair", "Table", "Shoes", "Gloves", "Pizza", "Bicycle", "Computer"];

impl Workload {
    pub fn new(sizes: Sizes, seed: u64) -> Self {
        Self::with_mix(sizes, seed, Mix::Steady)
    }

    pub fn with_mix(sizes: Sizes, seed: u64, mix: Mix) -> Self {
        Workload {
            rng: StdRng::seed_from_u64(seed),
            sizes,
            mix,
            only: None,
            users: Vec::new(),
            addresses: Vec::new(),
            orders: Vec::new(),
            items: Vec::new(),
            next_address: 1,
            next_event: 1,
            offsets: [0; 5],
        }
    }

    /// The steady mix's changes of one kind alone (`None`: every kind, in
    /// their shares): what each kind costs an engine. The initial state is
    /// the same either way.
    pub fn only(mut self, kind: Option<SteadyKind>) -> Self {
        self.only = kind;
        self
    }

    fn at(&mut self, stream: u32, data: TableChange) -> Change {
        let offset = self.offsets[stream as usize];
        self.offsets[stream as usize] += 1;
        Change { pos: Some(SourcePos { stream, offset }), data }
    }

    fn user(&mut self, id: i64) -> User {
        let phone = Some(format_smolstr!("555{:07}", self.rng.random_range(0..10_000_000)));
        if self.mix == Mix::Churn {
            let (first, last): (String, String) = (FirstName().fake_with_rng(&mut self.rng), LastName().fake_with_rng(&mut self.rng));
            let email = format_smolstr!("{}.{}{id}@example.com", first.to_lowercase(), last.to_lowercase());
            return User { user_id: id, name: format_smolstr!("{first} {last}"), email, phone };
        }
        User { user_id: id, name: format_smolstr!("User {id}"), email: format_smolstr!("user{id}@example.com"), phone }
    }

    fn address(&mut self, user_id: i64) -> Address {
        let id = self.next_address;
        self.next_address += 1;
        if self.mix == Mix::Churn {
            let rng = &mut self.rng;
            return Address {
                address_id: id,
                user_id,
                street: format_smolstr!("{} {}", BuildingNumber().fake_with_rng::<String, _>(rng), StreetName().fake_with_rng::<String, _>(rng)),
                city: CityName().fake_with_rng::<String, _>(rng).into(),
                state: Some(StateName().fake_with_rng::<String, _>(rng).into()),
                postal_code: Some(ZipCode().fake_with_rng::<String, _>(rng).into()),
                country: CountryName().fake_with_rng::<String, _>(rng).into(),
            };
        }
        Address {
            address_id: id,
            user_id,
            street: format_smolstr!("{} Main Street", self.rng.random_range(1..9999)),
            city: "Springfield".into(),
            state: Some("Oregon".into()),
            postal_code: Some(format_smolstr!("{:05}", self.rng.random_range(0..99999))),
            country: "USA".into(),
        }
    }

    fn order(&mut self, id: i64) -> Order {
        let t = Timestamp(1_700_000_000_000_000 + self.rng.random_range(0..1_000_000) * 1_000_000);
        Order {
            order_id: id,
            user_id: self.rng.random_range(1..=self.sizes.users),
            total: Decimal::new(self.rng.random_range(100..100_000), 2),
            order_date: Some(t),
            order_status: Some("Created".into()),
            updated_date: Some(t),
        }
    }

    fn item(&mut self, id: i64) -> Item {
        let name = match self.mix {
            Mix::Steady => format_smolstr!("Sleek Cotton Thing {}", id % 100),
            Mix::Churn => {
                let r = &mut self.rng;
                format_smolstr!("{} {} {}", ADJECTIVES[r.random_range(0..8)], MATERIALS[r.random_range(0..8)], PRODUCTS[r.random_range(0..8)])
            }
        };
        Item {
            id,
            order_id: Some(self.rng.random_range(1..=self.sizes.orders)),
            name: Some(name),
            quantity: Some(self.rng.random_range(1..10)),
            price: Decimal::new(self.rng.random_range(100..10_000), 2),
        }
    }

    fn event(&mut self) -> StatusEvent {
        let id = self.next_event;
        self.next_event += 1;
        StatusEvent {
            id,
            order_id: self.rng.random_range(1..=self.sizes.orders),
            status: ["received", "preparing", "cooked", "delivered", "finished"][self.rng.random_range(0..5)].into(),
            updated_at: Timestamp(1_700_000_000_000_000 + self.rng.random_range(0..2_000_000) * 1_000_000),
        }
    }

    /// The initial state as a stream of inserts (a snapshot).
    pub fn initial(&mut self) -> Vec<Change> {
        let s = self.sizes;
        let mut out = Vec::with_capacity((s.users * 2 + s.orders + s.items + s.events) as usize);
        for id in 1..=s.users {
            let u = self.user(id);
            self.users.push(Some(u.clone()));
            out.push(self.at(0, TableChange::Users(RowChange::insert(u))));
            let a = self.address(id);
            self.addresses.push(Some(a.clone()));
            out.push(self.at(1, TableChange::Addresses(RowChange::insert(a))));
        }
        for id in 1..=s.orders {
            let o = self.order(id);
            self.orders.push(Some(o.clone()));
            out.push(self.at(2, TableChange::Orders(RowChange::insert(o))));
        }
        for id in 1..=s.items {
            let i = self.item(id);
            self.items.push(Some(i.clone()));
            out.push(self.at(3, TableChange::Items(RowChange::insert(i))));
        }
        for _ in 0..s.events {
            let e = self.event();
            out.push(self.at(4, TableChange::Status(e)));
        }
        out
    }

    /// One change of the chosen mix.
    pub fn next_change(&mut self) -> Change {
        match self.mix {
            Mix::Steady => self.next_steady(),
            Mix::Churn => self.next_churn(),
        }
    }

    /// Inserts `new` at a new id (`rows.len() + 1`) when `idx` is `None`, or
    /// updates (`Some(new)`) or deletes (`None`) the row at `idx`; the change
    /// with its true `before`. `None` when the row to delete is gone already.
    fn row_change<R: Clone>(rows: &mut Vec<Option<R>>, idx: Option<usize>, new: Option<R>) -> Option<RowChange<R>> {
        match (idx, new) {
            (None, Some(new)) => {
                rows.push(Some(new.clone()));
                Some(RowChange::insert(new))
            }
            (Some(i), Some(new)) => Some(match rows[i].replace(new.clone()) {
                Some(old) => RowChange::update(old, new),
                None => RowChange::insert(new),
            }),
            (Some(i), None) => rows[i].take().map(RowChange::delete),
            (None, None) => unreachable!("a delete names its row"),
        }
    }

    /// One change of [`Mix::Churn`].
    fn next_churn(&mut self) -> Change {
        loop {
            if let Some(change) = self.try_churn() {
                return change;
            }
        }
    }

    /// A change of [`Mix::Churn`], or `None` when the row it drew is gone.
    fn try_churn(&mut self) -> Option<Change> {
        let roll = self.rng.random_range(0..100);
        let (users, orders, items) = (self.users.len(), self.orders.len(), self.items.len());
        let r = &mut self.rng;
        // Orders and items are hot (s = 1.1): a few get most of the edits and
        // events. Buyers are mildly skewed (s = 0.8: the busiest has about 1%
        // of the new orders), and profile edits, sign-ups and deletions fall
        // on any user: skewing those too would make the busiest buyer's
        // thousands of orders change with every edit of that one profile.
        let (hot_order, hot_item) = (zipf_index(r, orders, 1.1), zipf_index(r, items, 1.1));
        let (buyer, any_user) = (zipf_index(r, users, 0.8), r.random_range(0..users));
        match roll {
            // Items: updates, inserts into a (hot) order, deletes.
            0..18 => {
                let mut new = self.item(hot_item as i64 + 1);
                new.order_id = self.items[hot_item].as_ref().and_then(|i| i.order_id).or(new.order_id);
                let change = Self::row_change(&mut self.items, Some(hot_item), Some(new))?;
                Some(self.at(3, TableChange::Items(change)))
            }
            18..28 => {
                let mut new = self.item(items as i64 + 1);
                new.order_id = Some(hot_order as i64 + 1);
                let change = Self::row_change(&mut self.items, None, Some(new))?;
                Some(self.at(3, TableChange::Items(change)))
            }
            28..33 => {
                let change = Self::row_change(&mut self.items, Some(hot_item), None)?;
                Some(self.at(3, TableChange::Items(change)))
            }
            // Orders: status and total updates, new orders of hot users, deletes.
            33..43 => {
                let mut new = self.order(hot_order as i64 + 1);
                new.user_id = self.orders[hot_order].as_ref().map_or(buyer as i64 + 1, |o| o.user_id);
                let change = Self::row_change(&mut self.orders, Some(hot_order), Some(new))?;
                Some(self.at(2, TableChange::Orders(change)))
            }
            43..49 => {
                let mut new = self.order(orders as i64 + 1);
                new.user_id = buyer as i64 + 1;
                let change = Self::row_change(&mut self.orders, None, Some(new))?;
                Some(self.at(2, TableChange::Orders(change)))
            }
            49..51 => {
                let change = Self::row_change(&mut self.orders, Some(hot_order), None)?;
                Some(self.at(2, TableChange::Orders(change)))
            }
            // Status events of hot orders, newer than the order's own time.
            51..66 => {
                let mut e = self.event();
                e.order_id = hot_order as i64 + 1;
                Some(self.at(4, TableChange::Status(e)))
            }
            // Addresses: new ones, deletes.
            66..70 => {
                let a = self.address(any_user as i64 + 1);
                let change = Self::row_change(&mut self.addresses, None, Some(a))?;
                Some(self.at(1, TableChange::Addresses(change)))
            }
            70..72 => {
                let idx = self.rng.random_range(0..self.addresses.len());
                let change = Self::row_change(&mut self.addresses, Some(idx), None)?;
                Some(self.at(1, TableChange::Addresses(change)))
            }
            // Users: updates, sign-ups (with an address), deletions.
            72..80 => {
                let new = self.user(any_user as i64 + 1);
                let change = Self::row_change(&mut self.users, Some(any_user), Some(new))?;
                Some(self.at(0, TableChange::Users(change)))
            }
            80..86 => {
                let new = self.user(users as i64 + 1);
                let change = Self::row_change(&mut self.users, None, Some(new))?;
                Some(self.at(0, TableChange::Users(change)))
            }
            86..88 => {
                let change = Self::row_change(&mut self.users, Some(any_user), None)?;
                Some(self.at(0, TableChange::Users(change)))
            }
            // No-ops for the view: a row written again unchanged, an old event.
            88..94 => {
                let o = self.orders[hot_order].clone()?;
                Some(self.at(2, TableChange::Orders(RowChange::update(o.clone(), o))))
            }
            94..97 => {
                let i = self.items[hot_item].clone()?;
                Some(self.at(3, TableChange::Items(RowChange::update(i.clone(), i))))
            }
            _ => {
                let mut e = self.event();
                e.order_id = hot_order as i64 + 1;
                e.updated_at = Timestamp(1_000_000); // long before any order
                Some(self.at(4, TableChange::Status(e)))
            }
        }
    }

    /// One change of [`Mix::Steady`]: item and order updates, status events,
    /// new addresses, user updates, item moves, deletes and re-inserts.
    fn next_steady(&mut self) -> Change {
        let kind = match self.only {
            Some(kind) => kind,
            None => SteadyKind::of_roll(self.rng.random_range(0..100)),
        };
        match kind {
            SteadyKind::ItemUpdate => {
                let idx = self.rng.random_range(0..self.items.len());
                let new = self.item(idx as i64 + 1);
                let change = match self.items[idx].replace(new.clone()) {
                    Some(old) => RowChange::update(old, new),
                    None => RowChange::insert(new),
                };
                self.at(3, TableChange::Items(change))
            }
            SteadyKind::OrderUpdate => {
                let idx = self.rng.random_range(0..self.orders.len());
                let mut new = self.order(idx as i64 + 1);
                let change = match self.orders[idx].clone() {
                    Some(old) => {
                        new.user_id = old.user_id;
                        RowChange::update(old, new.clone())
                    }
                    None => RowChange::insert(new.clone()),
                };
                self.orders[idx] = Some(new);
                self.at(2, TableChange::Orders(change))
            }
            SteadyKind::StatusEvent => {
                let e = self.event();
                self.at(4, TableChange::Status(e))
            }
            SteadyKind::AddressInsert => {
                let user = self.rng.random_range(1..=self.sizes.users);
                let a = self.address(user);
                self.at(1, TableChange::Addresses(RowChange::insert(a)))
            }
            SteadyKind::UserUpdate => {
                let idx = self.rng.random_range(0..self.users.len());
                let new = self.user(idx as i64 + 1);
                let change = match self.users[idx].replace(new.clone()) {
                    Some(old) => RowChange::update(old, new),
                    None => RowChange::insert(new),
                };
                self.at(0, TableChange::Users(change))
            }
            SteadyKind::OrderMove => {
                let idx = self.rng.random_range(0..self.orders.len());
                let mut new = self.order(idx as i64 + 1);
                new.user_id = self.rng.random_range(1..=self.sizes.users);
                let change = match self.orders[idx].replace(new.clone()) {
                    Some(old) => RowChange::update(old, new),
                    None => RowChange::insert(new),
                };
                self.at(2, TableChange::Orders(change))
            }
            SteadyKind::ItemDeleteOrInsert => {
                let idx = self.rng.random_range(0..self.items.len());
                let change = match self.items[idx].take() {
                    Some(old) => RowChange::delete(old),
                    None => {
                        let new = self.item(idx as i64 + 1);
                        self.items[idx] = Some(new.clone());
                        RowChange::insert(new)
                    }
                };
                self.at(3, TableChange::Items(change))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_draw_each_kind_in_its_share() {
        let mut counts = std::collections::HashMap::new();
        for roll in 0..100 {
            *counts.entry(SteadyKind::of_roll(roll)).or_insert(0u32) += 1;
        }
        for (kind, share) in SteadyKind::SHARES {
            assert_eq!(counts[&kind], share, "{kind:?}");
        }
        // Where the ranges meet, as the stream has always read them.
        let edges =
            [(24, SteadyKind::ItemUpdate), (25, SteadyKind::OrderUpdate), (70, SteadyKind::AddressInsert), (95, SteadyKind::ItemDeleteOrInsert)];
        for (roll, kind) in edges {
            assert_eq!(SteadyKind::of_roll(roll), kind, "roll {roll}");
        }
    }

    #[test]
    fn a_stream_of_one_kind_has_only_changes_of_that_kind() {
        let sizes = Sizes { users: 20, orders: 50, items: 100, events: 10 };
        let table = |c: &Change| std::mem::discriminant(&c.data);
        for (kind, example) in [
            (SteadyKind::StatusEvent, TableChange::Status(StatusEvent { id: 0, order_id: 0, status: "x".into(), updated_at: Timestamp(0) })),
            (SteadyKind::UserUpdate, TableChange::Users(RowChange { before: None, after: None })),
        ] {
            let mut workload = Workload::new(sizes, 1).only(Some(kind));
            workload.initial();
            let changes: Vec<Change> = (0..200).map(|_| workload.next_change()).collect();
            assert!(changes.iter().all(|c| table(c) == std::mem::discriminant(&example)), "{kind:?}");
        }
        let mut workload = Workload::new(sizes, 1).only(Some(SteadyKind::ItemUpdate));
        workload.initial();
        for _ in 0..200 {
            let TableChange::Items(change) = workload.next_change().data else { panic!("not an item change") };
            assert!(change.before.is_some() && change.after.is_some(), "an item update has both rows");
        }
    }
}
