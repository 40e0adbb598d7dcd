    nickname: Mapped[str | None] = mapped_column(sa.Text)
