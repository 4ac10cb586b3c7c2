DROP TABLE catalogue_stats;
