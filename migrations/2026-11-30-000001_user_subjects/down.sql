DROP TABLE user_subjects;
