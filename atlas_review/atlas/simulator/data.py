"""Static pools the generator draws from: Indian names, places, dealers, phones.

Fictional on purpose: the dealers and streets are made up so that demo data can never be
mistaken for a real customer or shop. Cities carry their GST state code and PIN prefix so
that GSTINs and addresses stay internally consistent.
"""

from __future__ import annotations

MALE_FIRST = (
    "Aarav", "Abhishek", "Ajay", "Amit", "Anil", "Arjun", "Ashok", "Deepak", "Dinesh",
    "Ganesh", "Gopal", "Harish", "Imran", "Jagdish", "Karthik", "Kiran", "Mahesh", "Manoj",
    "Mohammed", "Murali", "Naveen", "Nitin", "Pashangh", "Prakash", "Rahul", "Rajesh",
    "Ramesh", "Ravi", "Sachin", "Sandeep", "Sanjay", "Santosh", "Satish", "Siva Rama",
    "Srinivas", "Sunil", "Suresh", "Venkatesh", "Vijay", "Vikram", "Yusuf",
)  # fmt: skip
FEMALE_FIRST = (
    "Aishwarya", "Anitha", "Anjali", "Bhavana", "Deepa", "Divya", "Fatima", "Geetha",
    "Jyoti", "Kavitha", "Lakshmi", "Meena", "Neha", "Nirmala", "Pooja", "Priya", "Radha",
    "Rekha", "Sangeetha", "Shabana", "Shanti", "Sneha", "Sunita", "Swati", "Uma", "Vijaya",
    "Vijaya Lakshmi",
)  # fmt: skip
SURNAMES = (
    "Agarwal", "Bhat", "Chatterjee", "Das", "Desai", "Gowda", "Gupta", "Irani", "Iyer",
    "Jadhav", "Joshi", "Khan", "Kulkarni", "Kumar", "Menon", "Mishra", "Naidu", "Nair",
    "Patel", "Patil", "Pillai", "Rao", "Reddy", "Shaikh", "Sharma", "Shetty", "Singh",
    "Sinha", "Verma", "Yadav", "Yarlagadda",
)  # fmt: skip

# (city, state, GST state code, first three PIN digits)
CITIES = (
    ("Mumbai", "Maharashtra", "27", "400"),
    ("Pune", "Maharashtra", "27", "411"),
    ("Nagpur", "Maharashtra", "27", "440"),
    ("Bengaluru", "Karnataka", "29", "560"),
    ("Mysuru", "Karnataka", "29", "570"),
    ("Chennai", "Tamil Nadu", "33", "600"),
    ("Coimbatore", "Tamil Nadu", "33", "641"),
    ("Hyderabad", "Telangana", "36", "500"),
    ("Warangal", "Telangana", "36", "506"),
    ("Nellore", "Andhra Pradesh", "37", "524"),
    ("Vijayawada", "Andhra Pradesh", "37", "520"),
    ("Visakhapatnam", "Andhra Pradesh", "37", "530"),
    ("Kolkata", "West Bengal", "19", "700"),
    ("New Delhi", "Delhi", "07", "110"),
    ("Jaipur", "Rajasthan", "08", "302"),
    ("Lucknow", "Uttar Pradesh", "09", "226"),
    ("Ahmedabad", "Gujarat", "24", "380"),
    ("Surat", "Gujarat", "24", "395"),
    ("Indore", "Madhya Pradesh", "23", "452"),
    ("Bhopal", "Madhya Pradesh", "23", "462"),
    ("Kochi", "Kerala", "32", "682"),
    ("Patna", "Bihar", "10", "800"),
)

STREETS = (
    "Anam Vari Street", "Kapu Street", "MG Road", "Station Road", "Gandhi Nagar Main Road",
    "Nehru Street", "Temple Street", "Market Road", "Church Road", "Subhash Marg",
    "Tilak Road", "Rajaji Salai", "Park Street", "Bazaar Street", "Ambedkar Road",
    "1st Cross Road", "4th Main Road", "Ring Road", "Old Bus Stand Road", "Court Road",
)  # fmt: skip
LOCALITIES = (
    "Gandhi Nagar", "Shivaji Nagar", "Jayanagar", "Indiranagar", "Ramnagar", "Ashok Nagar",
    "Vidyanagar", "Lakshmi Nagar", "Saraswati Colony", "Kamala Nagar", "Nehru Colony",
    "Balaji Nagar", "Patel Nagar", "Rajiv Nagar", "Sai Nagar",
)  # fmt: skip
BUILDINGS = (
    "Falcon Tower", "Abbai Reddy Complex", "Sai Residency", "Krishna Apartments",
    "Green Park Enclave", "Sri Lakshmi Towers", "Royal Heights", "Ganga Complex",
)  # fmt: skip

DEALER_PREFIX = (
    "Sri Venkateswara", "Sai Ram", "Balaji", "Krishna", "New Shree Ganesh", "Mobile",
    "Metro", "Star", "Royal", "Jai Hind", "Lakshmi", "Annapurna", "Bharat", "Sunrise",
)  # fmt: skip
DEALER_SUFFIX = (
    "Mobiles", "Electronics", "Digital World", "Point", "Telecom", "Mobile Gallery",
    "Home Appliances", "Enterprises", "Communications",
)  # fmt: skip

# (model code as printed on the box label, type allocation code, typical price in rupees)
PHONES = (
    ("V2123", "86130905", 17999),
    ("V2250", "86775306", 25999),
    ("SM-A155F", "35016433", 15999),
    ("SM-M346B", "35387816", 19499),
    ("SM-S921B", "35083672", 79999),
    ("CPH2565", "86287906", 21999),
    ("RMX3840", "86481707", 26999),
    ("23124RA7EO", "86924407", 18999),
    ("A3090", "35672519", 79900),
    ("A2849", "35395512", 59900),
    ("I2301", "86107607", 31999),
    ("NE2211", "86439506", 43999),
)

FINANCIERS = ("Atlas Finance Ltd", "IDFC First Bank", "Bajaj Finance Ltd", "HDB Financial")

# Extra fields that the contract does not list; a few documents carry one of these so that
# the dashboard proves it keeps fields it has never seen.
UNKNOWN_FIELDS = {
    "INVOICE": ("warranty_card_present", "yes"),
    "DELIVERY_ORDER": ("scheme_code", "CDL-0EMI-12"),
    "AADHAAR": ("qr_code_present", "yes"),
    "PAN": ("signature_present", "yes"),
    "IMEI_CLOSEUP_IMAGE": ("serial_number", "R9ZW30KLM2X"),
    "ASSET_OPEN_BOX_IMAGE": ("box_seal_intact", "no"),
}

INVALID_REASONS = {
    "ASSET_OPEN_BOX_IMAGE": ("multiple people", "customer face not visible", "image blurred"),
    "AADHAAR": ("image blurred", "document cropped", "photocopy not accepted"),
    "PAN": ("image blurred", "document cropped"),
    "INVOICE": ("image blurred", "page cut off", "handwritten invoice"),
    "DELIVERY_ORDER": ("image blurred", "page cut off"),
    "IMEI_CLOSEUP_IMAGE": ("image blurred", "glare on label"),
}

# Address abbreviations the way OCR and clerks shorten them.
ABBREVIATIONS = (
    ("Street", "St"),
    ("Road", "Rd"),
    ("Nagar", "Ngr"),
    ("Main", "Mn"),
    ("Colony", "Col"),
    ("Complex", "Cplx"),
    ("Apartments", "Apts"),
)
# Characters OCR confuses; used to inject realistic single-character errors.
OCR_CONFUSIONS = {
    "0": "8", "8": "3", "3": "8", "1": "7", "7": "1", "5": "6", "6": "5", "2": "7",
    "4": "9", "9": "4", "O": "0", "I": "1", "S": "5", "B": "8", "a": "o", "e": "c",
    "i": "l", "l": "i", "n": "m", "m": "n", "u": "v", "r": "n", "h": "b",
}  # fmt: skip
