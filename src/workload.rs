//! Generated shop states and change streams, for benchmarks and load tests.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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

/// Keeps the current rows so that updates and deletes carry a true `before`.
pub struct Workload {
    rng: StdRng,
    sizes: Sizes,
    users: Vec<Option<User>>,
    orders: Vec<Option<Order>>,
    items: Vec<Option<Item>>,
    next_address: i64,
    next_event: i64,
    offsets: [i64; 5],
}

impl Workload {
    pub fn new(sizes: Sizes, seed: u64) -> Self {
        Workload {
            rng: StdRng::seed_from_u64(seed),
            sizes,
            users: Vec::new(),
            orders: Vec::new(),
            items: Vec::new(),
            next_address: 1,
            next_event: 1,
            offsets: [0; 5],
        }
    }

    fn at(&mut self, stream: u32, data: TableChange) -> Change {
        let offset = self.offsets[stream as usize];
        self.offsets[stream as usize] += 1;
        Change { pos: Some(SourcePos { stream, offset }), data }
    }

    fn user(&mut self, id: i64) -> User {
        User {
            user_id: id,
            name: format_smolstr!("User {id}"),
            email: format_smolstr!("user{id}@example.com"),
            phone: Some(format_smolstr!("555{:07}", self.rng.random_range(0..10_000_000))),
        }
    }

    fn address(&mut self, user_id: i64) -> Address {
        let id = self.next_address;
        self.next_address += 1;
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
        Item {
            id,
            order_id: Some(self.rng.random_range(1..=self.sizes.orders)),
            name: Some(format_smolstr!("Sleek Cotton Thing {}", id % 100)),
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

    /// One change of the mixed stream: item and order updates, status
    /// events, new addresses, user updates, item moves, deletes and re-inserts.
    pub fn next_change(&mut self) -> Change {
        let roll = self.rng.random_range(0..100);
        match roll {
            0..25 => {
                let idx = self.rng.random_range(0..self.items.len());
                let new = self.item(idx as i64 + 1);
                let change = match self.items[idx].replace(new.clone()) {
                    Some(old) => RowChange::update(old, new),
                    None => RowChange::insert(new),
                };
                self.at(3, TableChange::Items(change))
            }
            25..45 => {
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
            45..70 => {
                let e = self.event();
                self.at(4, TableChange::Status(e))
            }
            70..78 => {
                let user = self.rng.random_range(1..=self.sizes.users);
                let a = self.address(user);
                self.at(1, TableChange::Addresses(RowChange::insert(a)))
            }
            78..88 => {
                let idx = self.rng.random_range(0..self.users.len());
                let new = self.user(idx as i64 + 1);
                let change = match self.users[idx].replace(new.clone()) {
                    Some(old) => RowChange::update(old, new),
                    None => RowChange::insert(new),
                };
                self.at(0, TableChange::Users(change))
            }
            88..95 => {
                // An order moves to another user.
                let idx = self.rng.random_range(0..self.orders.len());
                let mut new = self.order(idx as i64 + 1);
                new.user_id = self.rng.random_range(1..=self.sizes.users);
                let change = match self.orders[idx].replace(new.clone()) {
                    Some(old) => RowChange::update(old, new),
                    None => RowChange::insert(new),
                };
                self.at(2, TableChange::Orders(change))
            }
            _ => {
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
