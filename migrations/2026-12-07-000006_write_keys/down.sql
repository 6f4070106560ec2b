DROP TABLE letip_write_key;
