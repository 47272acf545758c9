"""Vocabulary the product's code defines, which config may only refer to.

Config cannot invent an operation the runtime does not meter, a module the product does not have,
or a permission no code checks; validation holds config to these lists.
"""

# Operations the runtime meters with credits (runtime/ charges CreditCost[operation] × quantity).
METERED_OPERATIONS: dict[str, str] = {
    "keyword_research": "Keyword research",
    "clustering": "Keyword clustering",
    "idea_generation": "Content idea generation",
    "outline_generation": "Outline generation",
    "content_generation": "Content generation",
    "rewrite": "Content rewrite",
    "optimization": "Content optimization",
    "meta_description": "Meta description",
    "title_generation": "Title generation",
    "image_prompt": "Image prompt",
    "image_generation": "Image generation",
    "internal_linking": "Internal linking",
}

# Prompt types the product uses; every metered AI operation has one.
PROMPT_TYPES: tuple[str, ...] = tuple(METERED_OPERATIONS)

# The inputs the product always supplies to a prompt of each type: every prompt of the type (its
# base prompt and each content-type or industry variant) must use at least these placeholders.
# A variant may use more (e.g. product_data on product pages) where the product supplies them.
PROMPT_REQUIRED_VARIABLES: dict[str, tuple[str, ...]] = {
    "keyword_research": ("industry", "sector", "seed_keywords", "language", "country", "count"),
    "clustering": ("keywords", "language", "max_clusters"),
    "idea_generation": ("primary_keyword", "keywords", "count", "language"),
    "outline_generation": ("title", "content_type", "primary_keyword", "word_count", "language"),
    "content_generation": ("title", "outline", "primary_keyword", "word_count", "language"),
    "rewrite": ("content", "instructions", "language"),
    "optimization": ("title", "content", "primary_keyword", "language"),
    "meta_description": ("title", "summary", "primary_keyword", "language"),
    "title_generation": ("topic", "primary_keyword", "count", "language"),
    "image_prompt": ("title", "section_text", "style"),
    "image_generation": ("image_prompt", "style", "aspect_ratio"),
    "internal_linking": ("content", "candidate_pages", "max_links", "language"),
}

MODULES: tuple[str, ...] = (
    "planner",
    "writer",
    "linker",
    "optimizer",
    "automation",
    "integration",
    "publisher",
)

FEATURES: tuple[str, ...] = (
    "ai_content",
    "ai_images",
    "bulk_generation",
    "custom_prompts",
    "custom_author_profiles",
    "custom_strategies",
    "own_ai_keys",
    "api_access",
    "webhooks",
    "white_label",
    "priority_support",
    "sso",
    "audit_log",
    "multi_language",
)

PERMISSIONS: dict[str, str] = {
    "account.view": "View account",
    "account.manage": "Manage account settings",
    "billing.view": "View billing",
    "billing.manage": "Manage billing and subscriptions",
    "users.view": "View users",
    "users.manage": "Invite and manage users",
    "sites.view": "View sites",
    "sites.manage": "Create and edit sites",
    "keywords.view": "View keywords",
    "keywords.manage": "Research and edit keywords",
    "content.view": "View content",
    "content.edit": "Write and edit content",
    "content.approve": "Approve content",
    "content.publish": "Publish content",
    "prompts.manage": "Customize AI prompts",
    "integrations.manage": "Manage integrations and API keys",
    "automation.manage": "Manage automation",
    "credits.consume": "Use credits",
}

CREDIT_TYPES: tuple[str, ...] = ("general", "idea", "content", "image", "optimization")
