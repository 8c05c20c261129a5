-- MariaDB only: BINLOG MONITOR is MariaDB's name for what SHOW MASTER STATUS needs.
GRANT BINLOG MONITOR ON *.* TO 'debezium'@'%';
GRANT BINLOG MONITOR ON *.* TO 'debezium'@'localhost';
